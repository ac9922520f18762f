"""What every notification channel shares: the event it is told about, the message rendered from it, and
the `Channel` interface (kind, Config model, pure `render`, `send` -> (status, error)).

A channel kind is one module (`webhook`, `email`, `apprise`) listed once in `iot.notify.CHANNELS`. The
outbox (`iot.worker.outbox`) knows nothing of kinds: it opens the sealed config, validates it with the
kind's `Config`, and calls `send`. Errors are short fixed texts: nothing a receiver sent reaches a tenant.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.settings import SmtpSettings

# "metric": a metric rule's incident opened or resolved (the device's state is unchanged).
EventKind = Literal["down", "up", "degraded", "silent", "metric", "region_unhealthy"]
EVENT_KINDS: tuple[str, ...] = ("down", "up", "degraded", "silent", "metric", "region_unhealthy")

# (HTTP status or None, error text or None): error None means delivered.
Outcome = tuple[int | None, str | None]


@dataclass(frozen=True, slots=True)
class Event:
    """One thing to tell a channel about (built from an outbox row's payload, or a test)."""

    kind: str  # one of EVENT_KINDS, or "test"
    event_id: str
    event_type: str  # the webhook's X-IoT-Event: device.state_changed, incident.opened, region.unhealthy, test
    occurred_at: str
    payload: dict[str, Any] = field(default_factory=dict)  # the webhook body, as queued
    device_id: int | None = None
    device_name: str = ""
    state: str = ""
    previous_state: str = ""
    summary: str = ""
    duration_s: float | None = None  # for "up": how long the device was down or degraded
    region: str = ""
    link: str = ""  # the device page in the tenant's dashboard

    @classmethod
    def from_payload(cls, event_type: str, payload: dict[str, Any], link_base: str) -> Event:
        device = payload.get("device") or {}
        incident = payload.get("incident") or {}
        device_id = device.get("id")
        return cls(
            kind=str(payload.get("kind") or _kind_of(payload)), event_id=str(payload.get("event_id", "")),
            event_type=event_type, occurred_at=str(payload.get("occurred_at", "")), payload=payload,
            device_id=device_id, device_name=str(device.get("name", "")), state=str(payload.get("state", "")),
            previous_state=str(payload.get("previous_state", "")), summary=str(incident.get("summary") or ""),
            duration_s=payload.get("duration_s"), region=str(payload.get("region", "")),
            link=f"{link_base}/devices/{device_id}" if device_id is not None and link_base else "",
        )


def _kind_of(payload: dict[str, Any]) -> str:
    incident = payload.get("incident") or {}
    if incident.get("kind") == "silent":
        return "silent"
    return str(payload.get("state", ""))


def test_event(slug: str, domain: str) -> Event:
    """What "send test" sends: a fresh event id, now, a link to the tenant's dashboard."""
    event_id = f"test-{uuid.uuid4().hex}"
    at = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return Event(kind="test", event_id=event_id, event_type="test", occurred_at=at,
                 payload={"event_id": event_id, "type": "test", "occurred_at": at}, link=f"https://{slug}.{domain}/")


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str
    severity: Literal["info", "success", "warning", "failure"]


@dataclass(frozen=True, slots=True)
class SendContext:
    """What sending needs from the process: egress policy, the deployment's SMTP relay, HTTP sessions."""

    egress: EgressPolicy = PUBLIC_ONLY
    smtp: SmtpSettings | None = None
    timeout_s: float = 10.0
    http: Any = None  # iot.notify.webhook.WebhookClient, opened by the caller


def duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    text = " ".join(p for p in parts if p)
    return text if days or hours else (f"{text} {secs}s".strip() if secs or not text else text)


def render(event: Event) -> Message:
    """The human message for `event` (pure: same event, same text)."""
    name = event.device_name or f"device {event.device_id}"
    if event.kind == "test":
        title, severity = "Test notification from my-iot-app", "info"
        body = "This channel works: alerts for your devices will arrive here."
    elif event.kind == "down":
        title, severity = f"{name} is DOWN", "failure"
        body = event.summary or f"{name} is down."
    elif event.kind == "silent":
        title, severity = f"{name} is SILENT", "failure"
        body = event.summary or f"{name} stopped sending heartbeats."
    elif event.kind == "degraded":
        title, severity = f"{name} is DEGRADED", "warning"
        body = event.summary or f"{name} is degraded."
    elif event.kind == "up":
        title, severity = f"{name} is UP", "success"
        was = event.previous_state or "down"
        body = (f"{name} is up again after {duration_text(event.duration_s)} {was}."
                if event.duration_s is not None else f"{name} is up again.")
    elif event.kind == "metric" and event.event_type == "incident.resolved":
        title, severity = f"{name}: metric back to normal", "success"
        body = f"Resolved: {event.summary}" if event.summary else f"A metric rule of {name} no longer holds."
    elif event.kind == "metric":
        title, severity = f"{name}: {event.summary or 'metric rule'}", "warning"
        body = event.summary or f"A metric rule of {name} holds."
    elif event.kind == "region_unhealthy":
        title, severity = f"Monitoring region {event.region} is unhealthy", "warning"
        body = (event.summary or f"Region {event.region} is unhealthy.") + (
            " Its results are left out of quorums until it recovers; your devices are judged by the other regions.")
    else:
        title, severity = f"{name}: {event.kind}", "info"
        body = event.summary
    if event.occurred_at:
        body += f"\nAt {event.occurred_at}."
    if event.link:
        body += f"\n{event.link}"
    return Message(title, body, severity)


class Channel:
    """One channel kind. Subclasses set `kind`, `label`, `Config`, and implement `problem` and `send`."""

    kind: ClassVar[str]
    label: ClassVar[str]
    example: ClassVar[dict[str, Any]]

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def parse(self, data: dict[str, Any]) -> BaseModel:
        return self.Config.model_validate(data)

    async def problem(self, config: Any, egress: EgressPolicy) -> tuple[str, str] | None:
        """(field, why) when this config cannot be saved (egress policy, unknown service), else None."""
        return None

    def shown(self, config: Any) -> dict[str, Any]:
        """What a tenant is shown of a stored config: secrets masked."""
        raise NotImplementedError

    def render(self, event: Event) -> Message:
        return render(event)

    async def send(self, config: Any, event: Event, ctx: SendContext) -> Outcome:
        raise NotImplementedError
