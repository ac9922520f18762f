"""The fixed-host channel kinds (Slack, Discord, Telegram, PagerDuty, Opsgenie, Pushover) delivered for real:
the tracker runs under a hosts-file stub (seen only by that process) that points the vendors' API names at a
local https server on 127.0.0.77:443 (self-signed; the URLs carry Apprise's `verify=no`), and "send test"
of each channel arrives there with the vendor's path and the test message."""

from __future__ import annotations

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
