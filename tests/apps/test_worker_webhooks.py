"""State changes enqueue signed webhook events durably; the sender delivers them at least once and
retries with backoff while the receiver is down."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import aiohttp
import pytest
from aiohttp import web

from iot import db
from iot.db.migrate import migrate
from iot.worker import store
from iot.worker.webhooks import WebhookSender

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
async def receiver():
    received: list[tuple[dict, dict]] = []
    state = {"status": 200}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["X-IoT-Signature"], expected)
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

    sender = WebhookSender(pool, backoff_base_s=0.2, idle_poll_s=0.05)
    async with aiohttp.ClientSession() as session:
        assert await sender.deliver_due(session) == 1
        row = await pool.fetchrow("SELECT status, attempts, last_status_code, next_attempt_at > now() AS later "
                                  "FROM webhook_deliveries")
        assert (row["status"], row["attempts"], row["last_status_code"], row["later"]) == ("pending", 1, 503, True)
        assert await sender.deliver_due(session) == 0  # not due yet: backoff

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
