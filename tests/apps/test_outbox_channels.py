"""State changes fan out to notification channels by event kind and routing rule, in the state-change
transaction; the outbox sender delivers them through each channel's kind (Apprise to local receivers, the
deployment's SMTP relay, the signed webhook), retries while a receiver is down, and keeps tokens out of
errors and logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import pytest
from channel_receivers import HttpReceiver, SmtpReceiver
from cryptography.fernet import Fernet
from egress_targets import TEST_EGRESS_ALLOW_CIDRS

from iot import db
from iot.db.migrate import migrate
from iot.egress import EgressPolicy
from iot.notify.apprise import notify_blocking, plugin_of
from iot.notify.webhook import WebhookClient
from iot.repo import channels
from iot.sealed import SecretBox
from iot.settings import SmtpSettings
from iot.worker import store
from iot.worker.outbox import OutboxSender

LOOPBACK = EgressPolicy.parse(TEST_EGRESS_ALLOW_CIDRS)
BOX = SecretBox([Fernet.generate_key().decode()])


@pytest.fixture
def http_receiver():
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
async def pool(database_url: str):
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    yield pool
    await pool.close()


async def _tenant(pool, slug: str) -> int:
    return await pool.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ($1, $1) RETURNING id", slug)


async def _device(pool, tenant: int, name: str, tags: list[str] | None = None) -> int:
    return await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target, tags) VALUES "
                               "($1, $2, 'icmp', '192.0.2.1', $3) RETURNING id", tenant, name, tags or [])


async def _change(pool, *changes: store.StateChange) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await store.write_state_changes(conn, list(changes))


def _sender(pool, **extra) -> OutboxSender:
    return OutboxSender(pool, egress=LOOPBACK, secret_box=BOX, domain="iot.example", backoff_base_s=0.05,
                        backoff_cap_s=0.05, **extra)


async def _deliver_all(pool, sender: OutboxSender, rounds: int = 20) -> None:
    async with WebhookClient(LOOPBACK, timeout_s=5) as client:
        for _ in range(rounds):
            if not await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"):
                return
            await sender.deliver_due(client)
            time.sleep(0.06)  # past the (tiny) backoff


async def test_events_are_routed_by_kind_tag_and_device(pool):
    acme = await _tenant(pool, "acme")
    other = await _tenant(pool, "other")
    gw = await _device(pool, acme, "gw", ["site/berlin"])
    cam = await _device(pool, acme, "cam", ["site/paris"])
    theirs = await _device(pool, other, "theirs", ["site/berlin"])
    spec = dict(kind="apprise", config={"url": "json://127.0.0.1:9/x"})
    everything = await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(name="all", **spec), egress=LOOPBACK)
    berlin = await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
        name="berlin", route="tags", route_tags=["site/berlin"], **spec), egress=LOOPBACK)
    cam_only = await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
        name="cam", route="devices", route_device_ids=[cam], events=["up"], **spec), egress=LOOPBACK)
    await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(name="off", enabled=False, **spec),
                                  egress=LOOPBACK)
    # the other tenant's channel for everything must see none of acme's events, and vice versa
    theirs_all = await channels.create_channel(pool, BOX, other, channels.ChannelSpec(name="all", **spec),
                                               egress=LOOPBACK)
    now = time.time()
    await _change(pool,
                  store.StateChange(gw, "down", now, "down", "gw is down", previous="up"),
                  store.StateChange(cam, "down", now, "down", "cam is down", previous="up"),
                  store.StateChange(theirs, "degraded", now, "degraded", "slow", previous="up"))
    await _change(pool, store.StateChange(cam, "up", now + 754, previous="down"))

    rows = await pool.fetch("SELECT channel_id, payload FROM webhook_deliveries ORDER BY id")
    routed = sorted((r["channel_id"], r["payload"]["device"]["name"], r["payload"]["kind"])
                    for r in rows)
    assert routed == sorted([
        (everything.id, "gw", "down"), (everything.id, "cam", "down"), (everything.id, "cam", "up"),
        (berlin.id, "gw", "down"), (cam_only.id, "cam", "up"), (theirs_all.id, "theirs", "degraded"),
    ])
    up = [r["payload"] for r in rows if r["payload"]["kind"] == "up"][0]
    assert up["duration_s"] == 754
    # no tenant webhook URL: no legacy row
    assert all(r["channel_id"] is not None for r in rows)

    # a replayed change enqueues nothing more
    await _change(pool, store.StateChange(cam, "up", now + 754, previous="down"))
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == len(rows)


async def test_apprise_json_channel_retries_until_the_receiver_is_back_and_carries_the_device_link(
        pool, http_receiver):
    acme = await _tenant(pool, "acme")
    gw = await _device(pool, acme, "gw")
    token = "tok-9f8e7d6c5b4a"
    url = f"json://127.0.0.1:{http_receiver.port}/hooks/{token}"
    channel = await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
        name="json", kind="apprise", config={"url": url}), egress=LOOPBACK)
    assert token not in json.dumps(channel.config_shown)
    assert token not in await pool.fetchval("SELECT config_sealed FROM channels")
    now = time.time()
    await _change(pool, store.StateChange(gw, "down", now, "down", "gw is down: failing from a, b", previous="up"))
    await _change(pool, store.StateChange(gw, "up", now + 125, previous="down"))

    http_receiver.status = 503
    sender = _sender(pool)
    # what the process's own log handler (iot.log.setup_logging: one on the root) would write, at DEBUG
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    async with WebhookClient(LOOPBACK, timeout_s=5) as client:
        assert await sender.deliver_due(client) == 2
    failed = await pool.fetch("SELECT status, attempts, last_error FROM webhook_deliveries ORDER BY id")
    assert [(r["status"], r["attempts"]) for r in failed] == [("pending", 1), ("pending", 1)]
    assert all(r["last_error"] and "503" in r["last_error"] and token not in r["last_error"] for r in failed)
    assert http_receiver.refused == 2 and not http_receiver.requests

    http_receiver.status = 200
    await _deliver_all(pool, sender)
    assert [r["status"] for r in await pool.fetch("SELECT status FROM webhook_deliveries")] == ["delivered"] * 2
    bodies = sorted((json.loads(r.body) for r in http_receiver.requests), key=lambda b: b["title"])
    assert [b["title"] for b in bodies] == ["gw is DOWN", "gw is UP"]
    assert bodies[0]["type"] == "failure" and bodies[1]["type"] == "success"
    assert "gw is down: failing from a, b" in bodies[0]["message"]
    assert "up again after 2m 5s down" in bodies[1]["message"]
    assert f"https://acme.iot.example/devices/{gw}" in bodies[0]["message"]
    assert all(r.path == f"/hooks/{token}" for r in http_receiver.requests)
    root.removeHandler(handler)
    root.setLevel(old_level)
    assert "delivery failed, will retry" in written.getvalue()
    assert token not in written.getvalue()


async def test_email_channel_goes_through_the_deployment_relay(pool):
    smtp = SmtpReceiver().start()
    try:
        acme = await _tenant(pool, "acme")
        gw = await _device(pool, acme, "gw")
        await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
            name="mail", kind="email", config={"to": ["ops@example.com", "oncall@example.com"]}))
        await _change(pool, store.StateChange(gw, "down", time.time(), "down", "gw is down", previous="up"))
        relay = SmtpSettings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
                             smtp_from="alerts@iot.example")
        await _deliver_all(pool, _sender(pool, smtp=relay))
        assert await pool.fetchval("SELECT status FROM webhook_deliveries") == "delivered"
        (message,) = smtp.messages
        assert message["Subject"] == "gw is DOWN"
        assert message["To"] == "ops@example.com, oncall@example.com"
        assert f"https://acme.iot.example/devices/{gw}" in message.get_payload()
    finally:
        smtp.stop()


async def test_form_and_ntfy_channels_deliver_to_local_receivers(pool, http_receiver):
    acme = await _tenant(pool, "acme")
    gw = await _device(pool, acme, "gw")
    port = http_receiver.port
    await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
        name="form", kind="apprise", config={"url": f"form://127.0.0.1:{port}/form"}), egress=LOOPBACK)
    await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
        name="ntfy", kind="ntfy", config={"url": f"ntfy://127.0.0.1:{port}/alerts"}), egress=LOOPBACK)
    await _change(pool, store.StateChange(gw, "degraded", time.time(), "degraded", "gw is slow", previous="up"))
    await _deliver_all(pool, _sender(pool))
    assert [r["status"] for r in await pool.fetch("SELECT status FROM webhook_deliveries")] == ["delivered"] * 2
    by_path = {r.path: r for r in http_receiver.requests}
    assert b"gw+is+DEGRADED" in by_path["/form"].body or b"gw%20is%20DEGRADED" in by_path["/form"].body
    ntfy = json.loads(by_path["/"].body)  # Apprise posts ntfy messages to the server root, topic inside
    assert (ntfy["topic"], ntfy["title"]) == ("alerts", "gw is DEGRADED") and "gw is slow" in ntfy["message"]


async def test_region_unhealthy_reaches_only_channels_that_asked_for_it(pool):
    acme = await _tenant(pool, "acme")
    spec = dict(kind="apprise", config={"url": "json://127.0.0.1:9/x"})
    wants = await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
        name="regions", events=["down", "region_unhealthy"], **spec), egress=LOOPBACK)
    await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(name="default", **spec), egress=LOOPBACK)
    await pool.execute("INSERT INTO regions (name, healthy, reason, last_heartbeat_at, updated_at) "
                       "VALUES ('tokyo', true, '', now(), now())")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(store.ENQUEUE_REGION_EVENTS, ["tokyo"], [False], ["its canaries fail"])
        await conn.execute(store.UPSERT_REGIONS, ["tokyo"], [False], ["its canaries fail"], [time.time()])
    async with pool.acquire() as conn, conn.transaction():  # still unhealthy: no second event
        await conn.execute(store.ENQUEUE_REGION_EVENTS, ["tokyo"], [False], ["its canaries fail"])
    rows = await pool.fetch("SELECT channel_id, payload FROM webhook_deliveries")
    assert [r["channel_id"] for r in rows] == [wants.id]
    payload = rows[0]["payload"]
    assert (payload["kind"], payload["region"], payload["incident"]["summary"]) == (
        "region_unhealthy", "tokyo", "its canaries fail")


async def test_apprise_sends_follow_no_redirect_and_connect_only_where_the_policy_allows(pool):
    """A receiver answering 307 to an address the policy refuses gets nothing re-sent there; a connection to
    a refused address is refused at connect time, whatever was checked before (DNS answers can change)."""
    only_one = EgressPolicy.parse("127.0.0.1/32")
    internal = HttpReceiver(host="127.0.0.2").start()
    redirecting = HttpReceiver(status=307, location=f"http://127.0.0.2:{0}/stolen").start()
    try:
        redirecting.location = f"http://127.0.0.2:{internal.port}/stolen"
        acme = await _tenant(pool, "acme")
        gw = await _device(pool, acme, "gw")
        await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
            name="json", kind="apprise", config={"url": f"json://127.0.0.1:{redirecting.port}/hook"}), egress=only_one)
        await _change(pool, store.StateChange(gw, "down", time.time(), "down", "gw is down", previous="up"))
        sender = OutboxSender(pool, egress=only_one, secret_box=BOX, domain="iot.example")
        async with WebhookClient(only_one, timeout_s=5) as client:
            assert await sender.deliver_due(client) == 1
        row = await pool.fetchrow("SELECT status, last_error FROM webhook_deliveries")
        assert row["status"] == "pending" and row["last_error"]
        assert redirecting.refused == 1 and not internal.requests

        # past the pre-send check (as after a changed DNS answer): refused when connecting
        plugin = plugin_of(f"json://127.0.0.2:{internal.port}/direct")
        ok, _lines, refused = await asyncio.to_thread(notify_blocking, plugin, "t", "b", "info", only_one)
        assert (ok, refused) == (False, True) and not internal.requests
        # the same send where the policy allows it arrives
        ok, _lines, refused = await asyncio.to_thread(notify_blocking, plugin, "t", "b", "info", LOOPBACK)
        assert (ok, refused) == (True, False) and [r.path for r in internal.requests] == ["/direct"]
    finally:
        internal.stop()
        redirecting.stop()


async def test_a_huge_answer_is_not_read_whole(pool):
    """A receiver answering 200 with 1 GiB: the send is done after 64 KiB and the connection closed."""
    huge = HttpReceiver(body_size=1 << 30).start()
    try:
        plugin = plugin_of(f"json://127.0.0.1:{huge.port}/hook")
        ok, _lines, refused = await asyncio.wait_for(
            asyncio.to_thread(notify_blocking, plugin, "t", "b", "info", LOOPBACK), timeout=20)
        assert (ok, refused) == (True, False)
        time.sleep(0.5)
        assert huge.body_sent < 64 << 20, f"{huge.body_sent} bytes were sent: the answer was read on"
    finally:
        huge.stop()


async def test_https_kinds_deliver_to_a_local_tls_receiver(pool):
    """Teams (Power Automate workflows://, https only), jsons:// and ntfys:// to a local https receiver with a
    self-signed certificate (Apprise's ?verify=no), through the outbox."""
    receiver = HttpReceiver(tls=True).start()
    try:
        acme = await _tenant(pool, "acme")
        gw = await _device(pool, acme, "gw")
        port = receiver.port
        for name, kind, url in [
            ("teams", "msteams", f"workflows://127.0.0.1:{port}/wf-id-123/sig-abcdef0123?verify=no"),
            ("jsons", "apprise", f"jsons://127.0.0.1:{port}/secure-hook?verify=no"),
            ("ntfys", "ntfy", f"ntfys://127.0.0.1:{port}/alerts?verify=no"),
        ]:
            await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(name=name, kind=kind,
                                          config={"url": url}), egress=LOOPBACK)
        await _change(pool, store.StateChange(gw, "down", time.time(), "down", "gw is down", previous="up"))
        await _deliver_all(pool, _sender(pool))
        rows = await pool.fetch("SELECT status, last_error FROM webhook_deliveries")
        assert [r["status"] for r in rows] == ["delivered"] * 3, [r["last_error"] for r in rows]
        paths = sorted(r.path.split("?")[0] for r in receiver.requests)
        # ntfy posts to the server root (topic in the body); Teams workflows to the Power Automate path
        assert paths == ["/", "/secure-hook", "/workflows/wf-id-123/triggers/manual/paths/invoke"]
        teams = [r for r in receiver.requests if "wf-id-123" in r.path]
        assert teams and b"gw is DOWN" in teams[0].body
    finally:
        receiver.stop()


async def test_a_channel_that_raises_fails_its_row_and_not_the_round(pool, http_receiver, monkeypatch):
    """A bug in one kind (here Apprise raising) is that row's failed attempt; the other rows of the round are
    delivered, and the exception's text (which could hold a token) is not logged."""
    from iot.notify.apprise import AppriseChannel

    async def broken(self, config, event, ctx):
        raise RuntimeError("boom tok-in-the-message-1234")

    acme = await _tenant(pool, "acme")
    gw = await _device(pool, acme, "gw")
    await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
        name="json", kind="apprise", config={"url": "json://127.0.0.1:9/x"}), egress=LOOPBACK)
    await channels.create_channel(pool, BOX, acme, channels.ChannelSpec(
        name="hook", kind="webhook", config={"url": f"http://127.0.0.1:{http_receiver.port}/h",
                                             "secret": "whsec-0123456789abcdef"}), egress=LOOPBACK)
    await _change(pool, store.StateChange(gw, "down", time.time(), "down", "gw is down", previous="up"))
    monkeypatch.setattr(AppriseChannel, "send", broken)
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    logging.getLogger().addHandler(handler)
    try:
        async with WebhookClient(LOOPBACK, timeout_s=5) as client:
            assert await _sender(pool).deliver_due(client) == 2
    finally:
        logging.getLogger().removeHandler(handler)
    rows = {r["name"]: r for r in await pool.fetch(
        "SELECT c.name, w.status, w.last_error FROM webhook_deliveries w JOIN channels c ON c.id = w.channel_id")}
    assert rows["hook"]["status"] == "delivered"
    assert (rows["json"]["status"], rows["json"]["last_error"]) == (
        "pending", "the channel failed unexpectedly; it will be retried")
    assert "channel send failed unexpectedly" in written.getvalue()
    assert "tok-in-the-message" not in written.getvalue()
