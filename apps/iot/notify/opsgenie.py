"""Opsgenie: one alert per problem, opened when it starts and closed when it ends.

Apprise creates the alerts. It can only close an alert from the same plugin instance's memory of the
request it made, and the outbox builds one instance per message, so through Apprise alone every "up" would
page the on-call person with a new alert. Here each alert carries an alias (Opsgenie's de-duplication key):
`my-iot-app-device-<id>` for a device that went down, degraded or silent (a device that goes from degraded
to down adds to the same alert), `my-iot-app-metric-incident-<id>` for a metric rule's incident. The
recovery message closes the alert by that alias with Opsgenie's Alert API (POST /v2/alerts/{alias}/close
?identifierType=alias), sent under the same egress policy, timeouts and answer bounds as Apprise's requests.
Test messages and region warnings stay plain alerts.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import requests
from apprise.plugins.opsgenie import OPSGENIE_API_LOOKUP

from iot.egress import REFUSED
from iot.notify.apprise import AppriseChannel, AppriseConfig, guarded_blocking, plugin_of, scrub
from iot.notify.base import Event, Outcome, SendContext

ALIAS_PREFIX = "my-iot-app"
# Device events that open ("down", "degraded", "silent") or close ("up") the device's alert.
_DEVICE_ALERT_KINDS = ("down", "degraded", "silent", "up")


def alert_alias(event: Event) -> str | None:
    """The alias of the alert `event` opens or closes; None for messages that are not part of one."""
    if event.kind == "metric":
        incident_id = (event.payload.get("incident") or {}).get("id")
        return f"{ALIAS_PREFIX}-metric-incident-{int(incident_id)}" if incident_id is not None else None
    if event.device_id is not None and event.kind in _DEVICE_ALERT_KINDS:
        return f"{ALIAS_PREFIX}-device-{int(event.device_id)}"
    return None


def closes_alert(event: Event) -> bool:
    return event.kind == "up" or (event.kind == "metric" and event.event_type == "incident.resolved")


class OpsgenieChannel(AppriseChannel):
    def __init__(self) -> None:
        # Apprise's Opsgenie turns "info" into a note on an alert it remembers (it remembers none): tests
        # and other plain messages are sent as alerts.
        super().__init__("opsgenie", "Opsgenie", "opsgenie://API_KEY", ("NotifyOpsgenie",),
                         severities={"info": "warning", "success": "warning"})

    def configure(self, plugin: Any, event: Event) -> None:
        plugin.alias = alert_alias(event)

    async def send(self, config: AppriseConfig, event: Event, ctx: SendContext) -> Outcome:
        alias = alert_alias(event)
        if alias is None or not closes_alert(event):
            return await super().send(config, event, ctx)
        plugin = plugin_of(config.url)
        if plugin is None or type(plugin).__name__ not in self.plugins:
            return None, "the channel URL is not an Opsgenie URL any more"
        note = self.render(event).body
        statuses: list[int] = []

        def close() -> bool:
            response = requests.post(
                f"{OPSGENIE_API_LOOKUP[plugin.region_name]}/{quote(alias, safe='')}/close",
                params={"identifierType": "alias"}, json={"source": "my-iot-app", "note": note},
                headers={"Authorization": f"GenieKey {plugin.apikey}"},
                verify=plugin.verify_certificate, timeout=ctx.timeout_s)
            statuses.append(response.status_code)
            return response.status_code in (200, 202)

        ok, lines, refused = await asyncio.to_thread(guarded_blocking, close, ctx.egress)
        status = statuses[0] if statuses else None
        if ok:
            return status, None
        if refused:
            return None, REFUSED
        if status is not None:
            return status, f"Opsgenie answered HTTP {status} to closing the alert"
        return None, scrub(lines, config.url)
