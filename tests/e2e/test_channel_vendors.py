"""The fixed-host channel kinds (Slack, Discord, Telegram, PagerDuty, Opsgenie, Pushover) delivered for real:
the tracker runs under a hosts-file stub (seen only by that process) that points the vendors' API names at a
local https server on 127.0.0.77:443 (self-signed; the URLs carry Apprise's `verify=no`), and "send test"
of each channel arrives there with the vendor's path and the test message."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from channel_receivers import HttpReceiver
from egress_stack import Stack, stack_for_test, tenant_client
from egress_targets import hosts_stub_command

pytestmark = pytest.mark.e2e

VENDOR_HOSTS = ("hooks.slack.com", "discord.com", "api.telegram.org", "events.pagerduty.com", "api.opsgenie.com",
                "api.pushover.net")
ADDRESS = "127.0.0.77"
# (kind, URL as users paste it, path the vendor's API gets, a token that travels in that path or body)
CHANNELS = [
    ("slack", "https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/abcdefghijklmnopqrstuvwx",
     "/services/T0ABCDEFG/B0HIJKLMN/abcdefghijklmnopqrstuvwx"),
    ("discord", "https://discord.com/api/webhooks/123456789012345678/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
     "/api/webhooks/123456789012345678/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("telegram", "tgram://123456789:ABCdefGHIjklMNOpqrSTUvwxYZ0123456789/-1001234567890",
     "/bot123456789:ABCdefGHIjklMNOpqrSTUvwxYZ0123456789/sendMessage"),
    ("pagerduty", "pagerduty://a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6@0123456789abcdefABCD", "/v2/enqueue"),
    ("opsgenie", "opsgenie://0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", "/v2/alerts"),
    ("pushover", "pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi", "/1/messages.json"),
]


@pytest.fixture
def stack(postgres_server, redis_server, tmp_path: Path, request) -> Iterator[Stack]:
    with stack_for_test(postgres_server, redis_server, tmp_path, request, "vendors") as running:
        yield running


def _vendor_answer(path: str) -> bytes:
    """What each API answers on success: Slack's incoming webhooks say `ok`; the others JSON."""
    if path.startswith("/services/"):
        return b"ok"
    return b'{"ok": true, "status": 1, "result": {"message_id": 1}, "requestId": "r-1"}'


@pytest.fixture
def vendor_api() -> Iterator[HttpReceiver]:
    try:
        server = HttpReceiver(host=ADDRESS, port=443, tls=True, answer=_vendor_answer).start()
    except OSError as exc:
        pytest.skip(f"cannot listen on {ADDRESS}:443 here: {exc}")
    yield server
    server.stop()


def test_fixed_host_kinds_deliver_a_test_to_their_vendor_api(stack: Stack, vendor_api: HttpReceiver,
                                                             tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{ADDRESS} {' '.join(VENDOR_HOSTS)}\n")
    tracker = stack.service("tracker", ["tracker"], hosts_stub_command(hosts))
    with tenant_client(tracker, "vendors") as tenant:
        for kind, url, path in CHANNELS:
            created = tenant.post("/v1/channels", json={"name": kind, "kind": kind,
                                                        "config": {"url": f"{url}{'&' if '?' in url else '?'}verify=no"}})
            assert created.status_code == 201, created.text
            before = len(vendor_api.requests)
            result = tenant.post(f"/v1/channels/{created.json()['id']}/test").json()
            assert result["delivered"] is True, (kind, result)
            assert len(vendor_api.requests) > before, (kind, result, [r.path for r in vendor_api.requests])
            request = vendor_api.requests[before]
            assert request.path.split("?")[0] == path, kind
            assert request.headers["Host"] in VENDOR_HOSTS, kind
            body = unquote_plus(request.body.decode())  # JSON, or form-encoded (Pushover)
            assert "Test notification from my-iot-app" in body or "This channel works" in body, (kind, body[:300])


# Run under the hosts stub: sends a device's down and up, a metric incident's opening and resolution and a
# test through the real Opsgenie channel (Apprise for alerts, the Alert API for closing), prints outcomes.
_OPSGENIE_SCRIPT = """
import asyncio, json, sys
from iot.egress import EgressPolicy
from iot.notify import CHANNELS, test_event
from iot.notify.base import Event, SendContext

channel = CHANNELS["opsgenie"]
config = channel.Config(url=sys.argv[1])
ctx = SendContext(egress=EgressPolicy.parse("127.0.0.0/8"), timeout_s=5)
device = {"id": 7, "name": "pump-7"}
events = [
    ("device.state_changed", {"event_id": "7-down", "kind": "down", "state": "down", "previous_state": "up",
                              "device": device, "incident": {"kind": "down", "summary": "timeout after 1s"}}),
    ("device.state_changed", {"event_id": "7-up", "kind": "up", "state": "up", "previous_state": "down",
                              "device": device, "duration_s": 120}),
    ("incident.opened", {"event_id": "m-open", "kind": "metric", "device": device,
                         "incident": {"id": 42, "kind": "metric", "summary": "temperature > 80"}}),
    ("incident.resolved", {"event_id": "m-closed", "kind": "metric", "device": device,
                           "incident": {"id": 42, "kind": "metric", "summary": "temperature > 80"}}),
]

async def main():
    outcomes = [await channel.send(config, Event.from_payload(t, p, "https://acme.example"), ctx) for t, p in events]
    outcomes.append(await channel.send(config, test_event("acme", "example"), ctx))
    print(json.dumps(outcomes))

asyncio.run(main())
"""


def test_opsgenie_alerts_close_when_the_device_or_the_incident_recovers(vendor_api: HttpReceiver,
                                                                       tmp_path: Path) -> None:
    """A recovery must close the alert its problem opened, not page the on-call person with a new one."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{ADDRESS} api.opsgenie.com\n")
    key = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
    sent = subprocess.run([*hosts_stub_command(hosts), sys.executable, "-c", _OPSGENIE_SCRIPT,
                           f"opsgenie://{key}?verify=no"], capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    outcomes = json.loads(sent.stdout)
    assert [error for _status, error in outcomes] == [None] * 5, outcomes

    calls = [(r.method, unquote_plus(r.path), json.loads(r.body)) for r in vendor_api.requests]
    assert [(method, path) for method, path, _body in calls] == [
        ("POST", "/v2/alerts"),
        ("POST", "/v2/alerts/my-iot-app-device-7/close?identifierType=alias"),
        ("POST", "/v2/alerts"),
        ("POST", "/v2/alerts/my-iot-app-metric-incident-42/close?identifierType=alias"),
        ("POST", "/v2/alerts"),
    ], calls
    down, up, metric, resolved, test = (body for _method, _path, body in calls)
    assert down["alias"] == "my-iot-app-device-7" and "pump-7 is DOWN" in down["message"]
    assert "is up again after 2m" in up["note"]
    assert metric["alias"] == "my-iot-app-metric-incident-42"
    assert "Resolved: temperature > 80" in resolved["note"]
    assert "alias" not in test  # a test is a plain alert
    assert all(r.headers["Authorization"] == f"GenieKey {key}" for r in vendor_api.requests)
