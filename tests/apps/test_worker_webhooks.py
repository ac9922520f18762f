"""State changes enqueue signed webhook events durably; the sender delivers them at least once and
retries with backoff while the receiver is down; one tenant's backlog does not hold back another's; the
egress policy applies at delivery time."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from egress_targets import TEST_EGRESS_ALLOW_CIDRS
from webhook_signature import verify_webhook

from iot import db
from iot.db.migrate import migrate
from iot.egress import PUBLIC_ONLY, REFUSED, EgressPolicy
from iot.notify.webhook import WebhookClient
from iot.worker import store
from iot.worker.outbox import OutboxSender as WebhookSender

LOOPBACK = EgressPolicy.parse(TEST_EGRESS_ALLOW_CIDRS)

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
async def receiver():
    received: list[tuple[dict, dict]] = []
    state = {"status": 200}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify_webhook(body, request.headers["X-IoT-Signature"], SECRET)
        if state["status"] == 200:
            received.append((dict(request.headers), json.loads(body)))
        return web.Response(status=state["status"])

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", received, state
    await runner.cleanup()


async def test_state_changes_are_delivered_signed_and_retried(database_url: str, receiver):
    url, received, state = receiver
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    tenant = await pool.fetchval(
        "INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) VALUES ('acme', 'h', $1, $2) "
        "RETURNING id", url, SECRET,
    )
    other = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('nohook', 'h2') RETURNING id")
    gateway = await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target) VALUES ($1, 'gw', 'icmp', "
                                  "'10.0.0.1') RETURNING id", tenant)
    child = await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target, parent_id) VALUES "
                                "($1, 'child', 'icmp', '10.0.0.2', $2) RETURNING id", tenant, gateway)
    silent = await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target) VALUES ($1, 'x', 'icmp', "
                                 "'10.0.0.3') RETURNING id", other)
    now = time.time()
    changes = [
        store.StateChange(gateway, "down", now, "down", "gw is down: failing from a, b", "{}", previous="up"),
        store.StateChange(child, "down", now, None, "child is down", cause_device_id=gateway, previous="up",
                          notify=False),
        store.StateChange(silent, "down", now, "down", "x is down", "{}", previous="up"),
    ]
    state["status"] = 503  # receiver down first
    async with pool.acquire() as conn, conn.transaction():
        await store.write_state_changes(conn, changes)
    async with pool.acquire() as conn, conn.transaction():
        await store.write_state_changes(conn, changes)  # replayed: states unchanged, nothing enqueued
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 1
    assert await pool.fetchval("SELECT count(*) FROM incidents WHERE device_id = $1", child) == 0

    sender = WebhookSender(pool, egress=LOOPBACK, backoff_base_s=0.2, idle_poll_s=0.05)
    async with WebhookClient(LOOPBACK, timeout_s=10) as client:
        assert await sender.deliver_due(client) == 1
        row = await pool.fetchrow("SELECT status, attempts, last_status_code, last_error, "
                                  "next_attempt_at > now() AS later FROM webhook_deliveries")
        assert (row["status"], row["attempts"], row["last_status_code"], row["last_error"], row["later"]) == (
            "pending", 1, 503, "HTTP 503", True)
        assert await sender.deliver_due(client) == 0  # not due yet: backoff

    state["status"] = 200
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    deadline = time.monotonic() + 10
    while not received:
        assert time.monotonic() < deadline, "webhook never delivered"
        await asyncio.sleep(0.05)
    stop.set()
    await task
    headers, event = received[0]
    assert headers["X-IoT-Event"] == "device.state_changed"
    assert event["device"] == {"id": gateway, "name": "gw"}
    assert event["state"] == "down" and event["previous_state"] == "up"
    assert event["incident"]["summary"].startswith("gw is down")
    assert headers["X-IoT-Event-Id"] == event["event_id"]
    row = await pool.fetchrow("SELECT status, attempts FROM webhook_deliveries")
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    await pool.close()


async def _hook_server(delay_s: float, hits: list[float]):
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay_s)
        hits.append(time.monotonic())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]


async def test_one_tenants_backlog_does_not_hold_back_another_tenants_events(database_url: str):
    """Issue 12: per-tenant delivery limits per round. A tenant with 200 queued events at a slow receiver
    gets a share of a round; another tenant's event goes out in the same round, not rounds later."""
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    slow_hits: list[float] = []
    fast_hits: list[float] = []
    slow_runner, slow_url = await _hook_server(0.2, slow_hits)
    fast_runner, fast_url = await _hook_server(0.0, fast_hits)
    try:
        noisy = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) "
                                    "VALUES ('noisy', 'h1', $1, $2) RETURNING id", slow_url, SECRET)
        quiet = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) "
                                    "VALUES ('quiet', 'h2', $1, $2) RETURNING id", fast_url, SECRET)
        await pool.execute(
            "INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload, next_attempt_at) "
            "SELECT $1, 'noisy-' || n, 'device.state_changed', '{}'::jsonb, now() - interval '1 hour' "
            "FROM generate_series(1, 200) n", noisy)
        await pool.execute("INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload) "
                           "VALUES ($1, 'quiet-1', 'device.state_changed', '{}'::jsonb)", quiet)
        sender = WebhookSender(pool, egress=LOOPBACK, batch=50, per_tenant=10)
        async with WebhookClient(LOOPBACK, timeout_s=10) as client:
            tried = await sender.deliver_due(client)
        assert fast_hits, f"the quiet tenant's event waited behind {tried} of the noisy tenant's"
        assert len(slow_hits) <= 10
    finally:
        await slow_runner.cleanup()
        await fast_runner.cleanup()
        await pool.close()


@pytest.mark.parametrize(("policy", "url_of", "expected_error"), [
    # plain http to loopback: only when loopback is allow-listed
    (PUBLIC_ONLY, lambda port: f"http://127.0.0.1:{port}/hook", REFUSED),
    (PUBLIC_ONLY, lambda port: f"http://localhost:{port}/hook", REFUSED),
    (PUBLIC_ONLY, lambda port: f"http://[::ffff:127.0.0.1]:{port}/hook", REFUSED),
    (PUBLIC_ONLY, lambda port: f"https://127.0.0.1:{port}/hook", REFUSED),
    (PUBLIC_ONLY, lambda port: f"https://2130706433:{port}/hook", REFUSED),
    (LOOPBACK, lambda port: f"http://127.0.0.1:{port}/hook", None),
    (LOOPBACK, lambda port: f"http://localhost:{port}/hook", None),
])
async def test_the_egress_policy_applies_when_a_webhook_is_delivered(database_url: str, receiver, policy,
                                                                     url_of, expected_error):
    """A webhook URL written straight into the database (bypassing registration) is judged again at delivery:
    nothing reaches a receiver the policy forbids."""
    url, received, _state = receiver
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    try:
        tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) "
                                     "VALUES ('t', 'h', $1, $2) RETURNING id", url_of(port), SECRET)
        await pool.execute("INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload) "
                           "VALUES ($1, 'e1', 'device.state_changed', '{\"event_id\": \"e1\"}'::jsonb)", tenant)
        async with WebhookClient(policy, timeout_s=10) as client:
            assert await WebhookSender(pool, egress=policy).deliver_due(client) == 1
        row = await pool.fetchrow("SELECT status, last_error FROM webhook_deliveries")
        assert row["last_error"] == expected_error
        assert len(received) == (0 if expected_error else 1)
    finally:
        await pool.close()
