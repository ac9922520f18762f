"""Channel kinds in process: the URLs users paste are accepted for the right kind and refused for the wrong
one, shown masked, judged by the egress policy where the host is the tenant's, and the rendered message for
every event kind. (Delivery: host-configurable kinds in test_outbox_channels.py; the fixed-host vendors,
whose host Apprise does not let us set, in tests/e2e/test_channel_vendors.py under a hosts-file stub.)"""

from __future__ import annotations

import pytest

from iot.egress import PUBLIC_ONLY
from iot.notify import CHANNELS, EVENT_KINDS, Event, render
from iot.notify.apprise import hosts_of, plugin_of, scrub

# (kind, URL as a user pastes it, a token that must never be shown)
REAL_URLS = [
    ("slack", "https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
    ("slack", "slack://T0ABCDEFG/B0HIJKLMN/abcdefghijklmnopqrstuvwx/#alerts", "abcdefghijklmnopqrstuvwx"),
    ("discord", "https://discord.com/api/webhooks/123456789012345678/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("telegram", "tgram://123456789:ABCdefGHIjklMNOpqrSTUvwxYZ0123456789/-1001234567890", "ABCdefGHIjklMNOpqrSTUvwxYZ0123456789"),
    ("pagerduty", "pagerduty://a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6@0123456789abcdefABCD", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"),
    ("opsgenie", "opsgenie://0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"),
    ("pushover", "pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi", "azGDORePK8gMaC0QOYAMyEEuzJnyUi"),
    ("msteams", "workflows://prod-01.westeurope.logic.azure.com:443/a1b2c3d4e5f6/Sig0123456789abcdefXYZ", "Sig0123456789abcdefXYZ"),
    ("ntfy", "ntfys://ntfy.sh/my-alerts-7f3a9c", "my-alerts-7f3a9c"),
]


@pytest.mark.parametrize(("kind", "url", "token"), REAL_URLS)
async def test_service_urls_are_accepted_for_their_kind_and_shown_masked(kind: str, url: str, token: str) -> None:
    channel = CHANNELS[kind]
    config = channel.parse({"url": url})
    assert await channel.problem(config, PUBLIC_ONLY) is None
    shown = channel.shown(config)["url"]
    assert token not in shown
    other = "discord" if kind == "slack" else "slack"
    problem = await CHANNELS[other].problem(config, PUBLIC_ONLY)
    assert problem is not None and problem[0] == "config.url"
    assert f"not a {CHANNELS[other].label} URL" in problem[1]


@pytest.mark.parametrize("url", [
    "workflows://10.0.0.7/wf/sig", "json://127.0.0.1/x", "ntfy://169.254.169.254/t", "jsons://[::1]/x",
    "form://0x7f000001/x", "xml://localhost/x",
])
async def test_tenant_chosen_hosts_are_judged_by_the_egress_policy(url: str) -> None:
    channel = CHANNELS["msteams" if url.startswith("workflows") else "ntfy" if url.startswith("ntfy") else "apprise"]
    problem = await channel.problem(channel.parse({"url": url}), PUBLIC_ONLY)
    assert problem is not None and problem[0] == "config.url", url


def test_fixed_host_services_have_no_tenant_host_and_configurable_ones_do() -> None:
    assert hosts_of(plugin_of(REAL_URLS[0][1])) == []
    assert hosts_of(plugin_of("ntfys://ntfy.example.com/topic")) == ["ntfy.example.com"]
    assert hosts_of(plugin_of("ntfy://just-a-topic")) == []  # ntfy.sh cloud mode


def test_scrub_removes_every_token_and_bounds_the_text() -> None:
    url = "json://user:pa55word@host.example/path-token-123?key=qs-token-456"
    text = scrub([f"failed for {url}", "pa55word and path-token-123 and qs-token-456", "x" * 500], url)
    for secret in ("pa55word", "path-token-123", "qs-token-456"):
        assert secret not in text
    assert len(text) <= 300


@pytest.mark.parametrize(("kind", "title", "in_body"), [
    ("down", "gw is DOWN", "gw is down: failing from frankfurt, tokyo"),
    ("up", "gw is UP", "up again after 1h 2m down"),
    ("degraded", "gw is DEGRADED", "gw is down: failing from frankfurt, tokyo"),
    ("silent", "gw is SILENT", "gw is down: failing from frankfurt, tokyo"),
    ("metric", "gw: gw is down: failing from frankfurt, tokyo", "gw is down: failing from frankfurt, tokyo"),
    ("region_unhealthy", "Monitoring region tokyo is unhealthy", "judged by the other regions"),
])
def test_every_event_kind_renders_with_the_device_link(kind: str, title: str, in_body: str) -> None:
    assert kind in EVENT_KINDS
    event = Event.from_payload("device.state_changed", {
        "event_id": "1-down-1", "kind": kind, "occurred_at": "2026-12-07T01:00:00.000Z",
        "device": {"id": 42, "name": "gw"}, "state": "up" if kind == "up" else "down",
        "previous_state": "down", "duration_s": 3720, "region": "tokyo",
        "incident": {"kind": kind, "summary": "gw is down: failing from frankfurt, tokyo"},
    }, "https://acme.iot.example")
    message = render(event)
    assert message.title == title
    assert in_body in message.body
    assert "https://acme.iot.example/devices/42" in message.body
    assert render(event) == message  # pure


def test_a_resolved_metric_incident_says_so() -> None:
    event = Event.from_payload("incident.resolved", {
        "event_id": "incident-7-resolved", "kind": "metric", "device": {"id": 42, "name": "fridge"},
        "incident": {"kind": "metric", "summary": "fridge: temperature > 8 (last 9.5)"}}, "https://acme.iot.example")
    message = render(event)
    assert message.title == "fridge: metric back to normal" and message.severity == "success"
    assert "Resolved: fridge: temperature > 8" in message.body


@pytest.mark.parametrize(("url", "reason"), [
    ("mailto://user:password@smtp.example.com", "use the e-mail channel kind"),
    ("irc://example.com/#alerts", "egress policy cannot check"),
    ("rsyslog://syslog.example.com", "egress policy cannot check"),
    ("syslog://", "server's syslog"),
])
async def test_plugins_beyond_the_egress_policy_or_acting_on_the_server_are_refused(url: str, reason: str) -> None:
    channel = CHANNELS["apprise"]
    problem = await channel.problem(channel.parse({"url": url}), PUBLIC_ONLY)
    assert problem is not None and problem[0] == "config.url" and reason in problem[1]
