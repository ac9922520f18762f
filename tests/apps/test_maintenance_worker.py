"""Maintenance windows in the real evaluator (Redis results stream, PostgreSQL): a device failing inside a
window keeps its state but raises no incident and no notification, one outside it does; when the window
is over and the device is still down, its incident opens then, and its timeline says why it came late."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from test_worker_evaluator import REGIONS, _evaluator, _results, _send, _state_is, _wait_for

from iot import db, protocol
from iot.db.migrate import migrate
from iot.worker.catalog import load_devices
from iot.worker.maintenance import MaintenanceCache


@pytest.fixture
async def env(database_url: str, redis_url: str):
    import redis.asyncio as aioredis

    await migrate(database_url)
    pool = await db.create_pool(database_url)
    tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) "
                                 "VALUES ('acme', 'h', 'http://127.0.0.1:9/hook', 's') RETURNING id")
    ids = [r["id"] for r in await pool.fetch(
        "INSERT INTO devices (tenant_id, name, kind, target, interval_s, tags) "
        "VALUES ($1, 'in-window', 'icmp', '10.0.0.1', 10, '{site/berlin}'), "
        "       ($1, 'outside', 'icmp', '10.0.0.2', 10, '{site/paris}') RETURNING id", tenant)]
    client = aioredis.Redis.from_url(redis_url)
    for region in REGIONS:
        await client.zadd(protocol.MONITOR_HEARTBEATS_KEY, {f"{region}/m1": time.time()})
    yield pool, client, tenant, ids
    await client.aclose()
    await pool.close()


# Two ways to cover the first device only: a one-off window on the device, and a daily window on its
# tag whose first occurrence was yesterday (so only the recurrence makes it active now).
WINDOWS = {
    "device one-off": ("device", None, timedelta(minutes=1), None),
    "tag recurring daily": ("tag", "site/berlin", timedelta(days=1, minutes=1), "FREQ=DAILY"),
}


@pytest.mark.parametrize("window", WINDOWS, ids=list(WINDOWS))
async def test_a_window_suppresses_incident_and_notification_until_it_ends(env, window):
    pool, client, tenant, (inside, outside) = env
    scope, tag, started_ago, rule = WINDOWS[window]
    start = datetime.now(UTC) - started_ago
    window_id = await pool.fetchval(
        "INSERT INTO maintenance_windows (tenant_id, scope, tag, device_id, reason, starts_at, ends_at, rrule) "
        "VALUES ($1, $2, $3, $4, 'Firmware upgrade', $5, $6, $7) RETURNING id",
        tenant, scope, tag, inside if scope == "device" else None, start, start + timedelta(minutes=30), rule)
    evaluator = _evaluator(pool, client, await load_devices(pool))
    evaluator._maintenance = MaintenanceCache(pool, refresh_seconds=0.1)
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    both = [inside, outside]
    try:
        t0 = time.time() - 20
        for region in REGIONS:
            await _send(client, region, _results(both, True, t0))
        await _wait_for(lambda: _state_is(pool, outside, "up"))
        before = await pool.fetchval("SELECT coalesce(max(id), 0) FROM webhook_deliveries")
        for k in (1, 2, 3):
            for region in REGIONS:
                await _send(client, region, _results(both, False, t0 + k))
        await _wait_for(lambda: _state_is(pool, inside, "down"))
        await _wait_for(lambda: _state_is(pool, outside, "down"))
        # checks kept running and states are stored; only the device outside the window alerts
        opened = await pool.fetch("SELECT device_id FROM incidents WHERE resolved_at IS NULL")
        assert [r["device_id"] for r in opened] == [outside]
        sent = await pool.fetch("SELECT payload FROM webhook_deliveries WHERE id > $1 ORDER BY id", before)
        assert [_payload(r)["device"]["id"] for r in sent] == [outside]

        async def all_checks_stored() -> bool:  # views are flushed every 0.2 s here
            return await pool.fetchval("SELECT count(*) FROM device_region_state WHERE device_id = $1 "
                                       "AND consecutive_failures = 3", inside) == 3
        await _wait_for(all_checks_stored)

        # the window ends (here: deleted) while the device is still down: its incident opens now
        await pool.execute("DELETE FROM maintenance_windows WHERE id = $1", window_id)

        async def inside_opened() -> bool:
            for region in REGIONS:
                await _send(client, region, _results([inside], False, time.time()))
            return await pool.fetchval("SELECT count(*) FROM incidents WHERE device_id = $1", inside) == 1

        await _wait_for(inside_opened)
        incident = await pool.fetchrow("SELECT id, kind, summary FROM incidents WHERE device_id = $1", inside)
        assert incident["kind"] == "down"
        assert f"after maintenance window {window_id} (Firmware upgrade) ended" in incident["summary"]
        events = await pool.fetch("SELECT kind, text FROM incident_events WHERE incident_id = $1 ORDER BY at, id",
                                  incident["id"])
        assert [e["kind"] for e in events] == ["suppressed", "opened"]
        assert events[0]["text"] == f"alert held back by maintenance window {window_id} (Firmware upgrade)"
        sent = await pool.fetch("SELECT event_type, payload FROM webhook_deliveries WHERE id > $1 ORDER BY id",
                                before)
        assert [(r["event_type"], _payload(r)["device"]["id"]) for r in sent] == [
            ("device.state_changed", outside), ("incident.opened", inside)]
    finally:
        stop.set()
        await task


async def test_a_device_recovering_inside_its_window_never_alerts(env):
    pool, client, tenant, (inside, outside) = env
    start = datetime.now(UTC) - timedelta(minutes=1)
    await pool.execute(
        "INSERT INTO maintenance_windows (tenant_id, scope, reason, starts_at, ends_at) "
        "VALUES ($1, 'tenant', 'Power work', $2, $3)", tenant, start, start + timedelta(hours=1))
    evaluator = _evaluator(pool, client, await load_devices(pool))
    evaluator._maintenance = MaintenanceCache(pool, refresh_seconds=0.1)
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    both = [inside, outside]
    try:
        t0 = time.time() - 20
        for region in REGIONS:
            await _send(client, region, _results(both, True, t0))
        await _wait_for(lambda: _state_is(pool, outside, "up"))
        before = await pool.fetchval("SELECT coalesce(max(id), 0) FROM webhook_deliveries")
        for k in (1, 2):
            for region in REGIONS:
                await _send(client, region, _results(both, False, t0 + k))
        await _wait_for(lambda: _state_is(pool, outside, "down"))
        for region in REGIONS:
            await _send(client, region, _results(both, True, t0 + 3))
        await _wait_for(lambda: _state_is(pool, outside, "up"))
        await _wait_for(lambda: _state_is(pool, inside, "up"))
        assert await pool.fetchval("SELECT count(*) FROM incidents") == 0
        assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE id > $1", before) == 0
    finally:
        stop.set()
        await task


def _payload(row) -> dict:
    value = row["payload"]
    return json.loads(value) if isinstance(value, str) else value
