"""The channels API as a real `iot tracker` process: CRUD with masked secrets, bad input as a 4xx naming the
field, the egress policy at save time, "send test" arriving at local receivers (Apprise json/form/ntfy, the
deployment's SMTP relay, the signed webhook), tenant isolation, and no token in responses or the log."""

from __future__ import annotations

import asyncio
import itertools
import json
import os

import asyncpg
import httpx
import pytest
from channel_receivers import HttpReceiver, SmtpReceiver
from iot_processes import Tracker, start_tracker
from webhook_signature import verify_webhook

from iot.db.migrate import migrate

_slugs = itertools.count()
SLACK_URL = "https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/abcdefghijklmnopqrstuvwx"


@pytest.fixture(scope="module")
def smtp():
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def receiver():
    server = HttpReceiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tracker(postgres_server, redis_server, tmp_path_factory, smtp) -> Tracker:
    database_url = postgres_server.create_database(f"channels_api_{os.getpid()}")
    asyncio.run(migrate(database_url))
    running = start_tracker(database_url, redis_server.url, tmp_path_factory.mktemp("tracker"), DOMAIN="iot.example",
                            SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port, SMTP_SECURITY="none",
                            SMTP_FROM="alerts@iot.example")
    yield running
    running.process.stop()


def new_tenant(tracker: Tracker) -> httpx.Client:
    return tracker.client(tracker.create_tenant(f"t{next(_slugs)}-ch"))


def db_fetch(tracker: Tracker, sql: str, *args) -> list[asyncpg.Record]:
    async def run():
        conn = await asyncpg.connect(tracker.database_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def assert_error(response: httpx.Response, status: int, field: str, reason_part: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    fields = [e["field"] for e in body.get("errors", [])]
    assert field in fields or body["detail"].startswith(f"{field}:"), body
    if reason_part:
        assert reason_part.lower() in response.text.lower(), body


def test_crud_answers_configs_masked_and_stores_them_sealed(tracker: Tracker) -> None:
    client = new_tenant(tracker)
    kinds = client.get("/v1/channel-kinds").json()
    assert {k["kind"] for k in kinds} == {"webhook", "email", "slack", "msteams", "discord", "telegram",
                                          "pagerduty", "opsgenie", "ntfy", "pushover", "apprise"}
    created = client.post("/v1/channels", json={"name": "On-call Slack", "kind": "slack",
                                                "config": {"url": SLACK_URL}})
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel["events"] == ["down", "up", "degraded", "silent", "metric"] and channel["route"] == "all"
    assert "abcdefghijklmnopqrstuvwx" not in created.text and "B0HIJKLMN" not in created.text
    assert channel["config"]["url"].startswith("slack://")
    sealed = db_fetch(tracker, "SELECT config_sealed FROM channels WHERE id = $1", channel["id"])[0][0]
    assert "abcdefghijklmnopqrstuvwx" not in sealed

    listed = client.get("/v1/channels")
    assert [c["name"] for c in listed.json()["items"]] == ["On-call Slack"]
    assert "abcdefghijklmnopqrstuvwx" not in listed.text

    # an edit without config keeps the stored one; routing changes
    edited = client.put(f"/v1/channels/{channel['id']}", json={
        "name": "Slack (berlin)", "kind": "slack", "config": None, "route": "tags", "route_tags": ["Site/Berlin"],
        "events": ["down", "up"]})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["config"], edited.json()["route_tags"]) == (channel["config"], ["site/berlin"])
    assert client.get(f"/v1/channels/{channel['id']}").json()["name"] == "Slack (berlin)"

    assert client.delete(f"/v1/channels/{channel['id']}").status_code == 204
    assert client.get(f"/v1/channels/{channel['id']}").status_code == 404
    assert "abcdefghijklmnopqrstuvwx" not in tracker.process.log_path.read_text()


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"name": "x", "kind": "sms", "config": {}}, "kind", "webhook"),
    ({"name": "x", "kind": "slack", "config": {"url": "json://example.com/x"}}, "config.url", "not a Slack URL"),
    ({"name": "x", "kind": "slack", "config": {"url": "not a url"}}, "config.url", "Apprise does not understand"),
    ({"name": "x", "kind": "apprise", "config": {"url": "json://10.0.0.5/hook"}}, "config.url", "private"),
    ({"name": "x", "kind": "apprise", "config": {"url": "json://169.254.169.254/latest"}}, "config.url", "link-local"),
    ({"name": "x", "kind": "apprise", "config": {"url": "json://example.com:99999/x"}}, "config.url", "port 1-65535"),
    ({"name": "x", "kind": "apprise", "config": {"url": "json://example.com:0/x"}}, "config.url", "port 1-65535"),
    ({"name": "x", "kind": "webhook", "config": {"url": "https://example.com:99999/x"}}, "config.url", "port"),
    ({"name": "x", "kind": "ntfy", "config": {"url": "ntfy://[fd00::1]/alerts"}}, "config.url", "unique local"),
    ({"name": "x", "kind": "apprise", "config": {"url": "mailto://u:p@smtp.example.com"}}, "config.url", "e-mail"),
    ({"name": "x", "kind": "webhook", "config": {"url": "https://10.1.2.3/hook"}}, "config.url", "private"),
    ({"name": "x", "kind": "email", "config": {"to": ["not-an-address"]}}, "config.to", "e-mail address"),
    ({"name": "x", "kind": "email", "config": {"to": ["a@example.com"], "smtp_host": "evil"}}, "config.smtp_host", ""),
    ({"name": "x", "kind": "email", "config": None}, "config", "required"),
    ({"name": "x", "kind": "email", "config": {"to": ["a@example.com"]}, "events": ["exploded"]}, "events[0]", "region_unhealthy"),
    ({"name": "x", "kind": "email", "config": {"to": ["a@example.com"]}, "route": "tags"}, "route_tags", "tag"),
    ({"name": "x", "kind": "email", "config": {"to": ["a@example.com"]}, "route": "devices"}, "route_device_ids", ""),
    ({"name": "", "kind": "email", "config": {"to": ["a@example.com"]}}, "name", ""),
])
def test_bad_channels_are_refused_naming_the_field(tracker: Tracker, body: dict, field: str, reason: str) -> None:
    assert_error(new_tenant(tracker).post("/v1/channels", json=body), 422, field, reason)


def test_duplicate_names_conflict(tracker: Tracker) -> None:
    client = new_tenant(tracker)
    body = {"name": "mail", "kind": "email", "config": {"to": ["a@example.com"]}}
    assert client.post("/v1/channels", json=body).status_code == 201
    assert_error(client.post("/v1/channels", json=body), 409, "name", "exists")


def test_send_test_arrives_at_each_local_receiver(tracker: Tracker, receiver: HttpReceiver, smtp: SmtpReceiver) -> None:
    client = new_tenant(tracker)
    port = receiver.port
    urls = {"json": f"json://127.0.0.1:{port}/json-hook", "form": f"form://127.0.0.1:{port}/form-hook"}
    for name, url in urls.items():
        created = client.post("/v1/channels", json={"name": name, "kind": "apprise", "config": {"url": url}})
        assert created.status_code == 201, created.text
        assert created.json()["config"]["url"] == f"{name}://127.0.0.1:{port}/•••"
        result = client.post(f"/v1/channels/{created.json()['id']}/test")
        assert result.json() == {"delivered": True, "status_code": None, "error": None}, result.text
    ntfy = client.post("/v1/channels", json={"name": "ntfy", "kind": "ntfy",
                                             "config": {"url": f"ntfy://127.0.0.1:{port}/alerts"}}).json()
    assert client.post(f"/v1/channels/{ntfy['id']}/test").json()["delivered"] is True
    hook = client.post("/v1/channels", json={"name": "hook", "kind": "webhook", "config": {
        "url": f"http://127.0.0.1:{port}/signed", "secret": "whsec-0123456789abcdef"}}).json()
    assert hook["config"]["secret"] == "••••••••cdef"
    assert client.post(f"/v1/channels/{hook['id']}/test").json() == {
        "delivered": True, "status_code": 200, "error": None}
    mail = client.post("/v1/channels", json={"name": "mail", "kind": "email",
                                             "config": {"to": ["ops@example.com"]}}).json()
    assert client.post(f"/v1/channels/{mail['id']}/test").json()["delivered"] is True

    by_path = {r.path.split("?")[0]: r for r in receiver.requests}
    assert json.loads(by_path["/json-hook"].body)["title"] == "Test notification from my-iot-app"
    assert b"Test+notification" in by_path["/form-hook"].body
    ntfy_body = json.loads(by_path["/"].body)  # Apprise posts ntfy messages to the server root, topic inside
    assert (ntfy_body["topic"], ntfy_body["title"]) == ("alerts", "Test notification from my-iot-app")
    signed = by_path["/signed"]
    assert signed.headers["X-IoT-Event"] == "test"
    assert verify_webhook(signed.body, signed.headers["X-IoT-Signature"], "whsec-0123456789abcdef")
    assert any(m["Subject"] == "Test notification from my-iot-app" and m["To"] == "ops@example.com"
               for m in smtp.messages)


def test_a_failed_test_says_why_without_the_token(tracker: Tracker, receiver: HttpReceiver) -> None:
    client = new_tenant(tracker)
    token = "sekrit-token-5a4b3c2d1e"
    channel = client.post("/v1/channels", json={"name": "json", "kind": "apprise", "config": {
        "url": f"json://127.0.0.1:{receiver.port}/{token}"}}).json()
    receiver.status = 503
    try:
        result = client.post(f"/v1/channels/{channel['id']}/test")
    finally:
        receiver.status = 200
    assert result.json()["delivered"] is False
    assert "503" in result.json()["error"] and token not in result.text
    assert token not in tracker.process.log_path.read_text()


def test_tenants_cannot_read_change_test_or_route_to_each_others_channels(tracker: Tracker) -> None:
    alice, bob = new_tenant(tracker), new_tenant(tracker)
    channel = alice.post("/v1/channels", json={"name": "a", "kind": "email",
                                               "config": {"to": ["a@example.com"]}}).json()
    body = {"name": "mine", "kind": "email", "config": {"to": ["b@example.com"]}}
    for response in (bob.get(f"/v1/channels/{channel['id']}"), bob.put(f"/v1/channels/{channel['id']}", json=body),
                     bob.post(f"/v1/channels/{channel['id']}/test"), bob.delete(f"/v1/channels/{channel['id']}"),
                     bob.get(f"/v1/channels/{channel['id']}/deliveries")):
        assert response.status_code == 404, response.text
    assert bob.get("/v1/channels").json()["items"] == []
    device = alice.post("/v1/devices", json={"name": "gw", "kind": "icmp", "target": "127.0.0.1"})
    assert device.status_code == 201, device.text
    device_id = device.json()["id"]
    assert_error(bob.post("/v1/channels", json={**body, "route": "devices", "route_device_ids": [device_id]}),
                 422, "route_device_ids", "no device")
    mine = alice.post("/v1/channels", json={"name": "gw only", "kind": "email", "config": {"to": ["a@example.com"]},
                                            "route": "devices", "route_device_ids": [device_id]})
    assert mine.status_code == 201, mine.text
    assert alice.get(f"/v1/channels/{channel['id']}").json()["config"] == {"to": ["a@example.com"]}
