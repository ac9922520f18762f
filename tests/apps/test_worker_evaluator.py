"""The evaluator against real Redis and PostgreSQL: quorum state changes, incidents, rollups, acks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
import redis.asyncio as aioredis

from iot import db, protocol
from iot.db.migrate import migrate
from iot.worker.catalog import load_devices
from iot.worker.evaluator import Evaluator
from iot.worker.state import Thresholds

REGIONS = ("ashburn", "frankfurt", "tokyo")
TH = Thresholds(quorum_min=2, failures_to_down=2)


async def _wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met before the deadline")


@pytest.fixture
async def env(database_url: str, redis_url: str):
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('acme', 'h') RETURNING id")
    await pool.execute(
        "INSERT INTO devices (tenant_id, name, kind, target, interval_s, timeout_ms) "
        "SELECT $1, 'dev-' || i, 'http', 'http://127.0.0.1/' || i, 10, 1000 FROM generate_series(1, 5) i",
        tenant,
    )
    client = aioredis.Redis.from_url(redis_url)
    for region in REGIONS:
        await client.zadd(protocol.MONITOR_HEARTBEATS_KEY, {f"{region}/m1": time.time()})
    devices = await load_devices(pool)
    yield pool, client, devices
    await client.aclose()
    await pool.close()


def _evaluator(pool: asyncpg.Pool, client: aioredis.Redis, devices: dict, name: str = "w1",
               reclaim_idle: float = 10.0) -> Evaluator:
    return Evaluator(client, pool, lambda: devices, TH, instance=name, region_alive_seconds=30,
                     flush_seconds=0.2, reclaim_idle_seconds=reclaim_idle)


async def _send(client: aioredis.Redis, region: str, rows: list[list]) -> None:
    await client.xadd(protocol.RESULTS_STREAM, {
        protocol.REGION_FIELD: region, protocol.INSTANCE_FIELD: "m1", protocol.RESULTS_FIELD: json.dumps(rows),
    })


def _results(device_ids, ok: bool, at: float, latency: float = 5.0) -> list[list]:
    return [[d, 1 if ok else 0, latency if ok else None, None if ok else "HTTP 500", at] for d in device_ids]


async def _states(pool: asyncpg.Pool) -> dict[int, str]:
    return {r["id"]: r["state"] for r in await pool.fetch("SELECT id, state FROM devices")}


async def test_devices_go_up_then_down_on_quorum_then_recover_with_one_incident(env):
    pool, client, devices = env
    ids = sorted(devices)
    evaluator = _evaluator(pool, client, devices)
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    try:
        t0 = time.time()
        for region in REGIONS:
            await _send(client, region, _results(ids, True, t0))
        await _wait_for(lambda: _all_state(pool, "up"))

        bad = ids[0]
        # one region failing twice is no quorum; a second region failing once is not consecutive
        await _send(client, "tokyo", _results([bad], False, t0 + 10))
        await _send(client, "tokyo", _results([bad], False, t0 + 20))
        await _send(client, "ashburn", _results([bad], False, t0 + 20))
        await _wait_for(lambda: _processed(evaluator, 3 * len(ids) + 3))
        assert evaluator.states[bad] == "up" and (await _states(pool))[bad] == "up"
        await _send(client, "ashburn", _results([bad], False, t0 + 30))
        await _wait_for(lambda: _state_is(pool, bad, "down"))
        # more failures and a replay of an old batch open no second incident
        await _send(client, "frankfurt", _results([bad], False, t0 + 30))
        await _send(client, "frankfurt", _results([bad], False, t0 + 40))
        await _send(client, "ashburn", _results([bad], False, t0 + 30))
        await _wait_for(lambda: _region_failures(pool, bad, "frankfurt", 2))
        incidents = await pool.fetch("SELECT kind, summary, resolved_at FROM incidents WHERE device_id = $1", bad)
        assert len(incidents) == 1 and incidents[0]["kind"] == "down" and incidents[0]["resolved_at"] is None
        assert "ashburn" in incidents[0]["summary"] and "HTTP 500" in incidents[0]["summary"]
        assert all(s == "up" for d, s in (await _states(pool)).items() if d != bad)

        for region in ("ashburn", "frankfurt"):
            await _send(client, region, _results([bad], True, t0 + 50))
        await _wait_for(lambda: _state_is(pool, bad, "up"))
        resolved = await pool.fetchval("SELECT resolved_at FROM incidents WHERE device_id = $1", bad)
        assert resolved is not None
    finally:
        stop.set()
        await task

    # every result was rolled up and acknowledged
    checks = await pool.fetchval("SELECT sum(checks) FROM rollups")
    assert checks == 3 * len(ids) + 8
    p95 = await pool.fetchval("SELECT latency_p95 FROM rollups WHERE device_id = $1 AND region = 'tokyo'", ids[1])
    assert p95 == pytest.approx(5.0)
    pending = await client.xpending(protocol.RESULTS_STREAM, protocol.RESULTS_GROUP)
    assert pending["pending"] == 0


async def test_region_with_failing_canaries_is_excluded_and_cannot_take_devices_down(env):
    pool, client, devices = env
    ids = sorted(devices)
    now = time.time()
    for region in ("ashburn", "frankfurt"):
        await client.hset(protocol.MONITOR_CANARIES_KEY, f"{region}/m1",
                          json.dumps({"ok": False, "at": now, "failed": ["http://canary"]}))
    await client.hset(protocol.MONITOR_CANARIES_KEY, "tokyo/m1", json.dumps({"ok": True, "at": now, "failed": []}))
    evaluator = _evaluator(pool, client, devices)
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    try:
        await _send(client, "tokyo", _results(ids, True, now))
        for i, region in enumerate(("ashburn", "frankfurt")):
            for k in range(3):
                await _send(client, region, _results(ids, False, now + 10 * k + i))
        await _wait_for(lambda: _all_state(pool, "up"))
        await _wait_for(lambda: _region_failures(pool, ids[0], "frankfurt", 3))
        await _wait_for(lambda: _regions_recorded(pool, {"tokyo", "ashburn", "frankfurt"}))
        assert set((await _states(pool)).values()) == {"up"}
        regions = {r["name"]: (r["healthy"], r["reason"]) for r in await pool.fetch("SELECT * FROM regions")}
        assert regions["tokyo"] == (True, None)
        assert regions["ashburn"][0] is False and "canaries" in regions["ashburn"][1]
        health = json.loads(await client.hget(protocol.REGION_HEALTH_KEY, "frankfurt"))
        assert health["healthy"] is False
    finally:
        stop.set()
        await task
    assert await pool.fetchval("SELECT count(*) FROM incidents") == 0


async def test_results_of_a_crashed_evaluator_are_reclaimed_and_stored_once(env):
    pool, client, devices = env
    ids = sorted(devices)
    t0 = time.time()
    for region in REGIONS:
        await _send(client, region, _results(ids, True, t0))
    crashed = _evaluator(pool, client, devices, name="crashed")
    await crashed.load()
    await crashed.refresh_regions()  # regions known, so the crashed evaluator does change device states
    reply = await client.xreadgroup(protocol.RESULTS_GROUP, "crashed", {protocol.RESULTS_STREAM: ">"}, count=10)
    await crashed.process(reply[0][1])  # state changes written at once, never flushed: the process "dies" here
    assert set((await _states(pool)).values()) == {"up"}
    assert (await client.xpending(protocol.RESULTS_STREAM, protocol.RESULTS_GROUP))["pending"] == 3

    successor = _evaluator(pool, client, devices, name="successor", reclaim_idle=0.0)
    await successor.load()
    stop = asyncio.Event()
    task = asyncio.create_task(successor.run(stop, lambda: True))
    try:
        await _wait_for(lambda: _rollup_checks(pool, 3 * len(ids)))
    finally:
        stop.set()
        await task
    assert (await client.xpending(protocol.RESULTS_STREAM, protocol.RESULTS_GROUP))["pending"] == 0
    assert await pool.fetchval("SELECT sum(checks) FROM rollups") == 3 * len(ids)


async def _processed(evaluator: Evaluator, n: int) -> bool:
    return evaluator.results_processed >= n


async def _all_state(pool: asyncpg.Pool, state: str) -> bool:
    return set((await _states(pool)).values()) == {state}


async def _state_is(pool: asyncpg.Pool, device_id: int, state: str) -> bool:
    return (await _states(pool))[device_id] == state


async def _regions_recorded(pool: asyncpg.Pool, names: set[str]) -> bool:
    return names <= {r["name"] for r in await pool.fetch("SELECT name FROM regions")}


async def _region_failures(pool: asyncpg.Pool, device_id: int, region: str, n: int) -> bool:
    value = await pool.fetchval(
        "SELECT consecutive_failures FROM device_region_state WHERE device_id = $1 AND region = $2", device_id, region
    )
    return value == n


async def _rollup_checks(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT coalesce(sum(checks), 0) FROM rollups") == n


async def test_gateway_down_raises_one_incident_not_one_per_child(env):
    pool, client, _ = env
    tenant = await pool.fetchval("SELECT id FROM tenants")
    # children get lower ids than their gateway, so they are evaluated first
    children = [r["id"] for r in await pool.fetch(
        "INSERT INTO devices (tenant_id, name, kind, target, interval_s) "
        "SELECT $1, 'child-' || i, 'icmp', '10.0.1.' || i, 10 FROM generate_series(1, 20) i RETURNING id", tenant)]
    gateway = await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target, interval_s) "
                                  "VALUES ($1, 'gateway', 'icmp', '10.0.0.1', 10) RETURNING id", tenant)
    await pool.execute("UPDATE devices SET parent_id = $1 WHERE id = ANY($2::bigint[])", gateway, children)
    devices = await load_devices(pool)
    evaluator = _evaluator(pool, client, devices)
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    group = [*children, gateway]
    try:
        t0 = time.time()
        for region in REGIONS:
            await _send(client, region, _results(group, True, t0))
        await _wait_for(lambda: _state_is(pool, gateway, "up"))
        for k in (1, 2):
            for region in REGIONS:
                await _send(client, region, _results(group, False, t0 + 10 * k))
        await _wait_for(lambda: _all_down(pool, group))
        incidents = await pool.fetch("SELECT device_id, kind FROM incidents WHERE resolved_at IS NULL")
        assert [(r["device_id"], r["kind"]) for r in incidents] == [(gateway, "down")]
    finally:
        stop.set()
        await task


async def test_a_child_still_down_after_its_gateway_recovers_gets_its_own_incident(env):
    pool, client, _ = env
    tenant = await pool.fetchval("SELECT id FROM tenants")
    await pool.execute("UPDATE tenants SET webhook_url = 'http://127.0.0.1:9/hook', webhook_secret = 's' "
                       "WHERE id = $1", tenant)
    gateway = await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target, interval_s) "
                                  "VALUES ($1, 'gw', 'icmp', '10.0.0.1', 10) RETURNING id", tenant)
    children = [r["id"] for r in await pool.fetch(
        "INSERT INTO devices (tenant_id, name, kind, target, interval_s, parent_id) "
        "SELECT $1, 'kid-' || i, 'icmp', '10.0.2.' || i, 10, $2 FROM generate_series(1, 3) i RETURNING id",
        tenant, gateway)]
    evaluator = _evaluator(pool, client, await load_devices(pool))
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    group = [gateway, *children]
    stuck, healed = children[0], children[1:]
    try:
        t0 = time.time() - 30
        for region in REGIONS:
            await _send(client, region, _results(group, True, t0))
        await _wait_for(lambda: _all_up(pool, group))
        before = await pool.fetchval("SELECT coalesce(max(id), 0) FROM webhook_deliveries")
        for k in (1, 2):
            for region in REGIONS:
                await _send(client, region, _results(group, False, t0 + k))
        await _wait_for(lambda: _all_down(pool, group))
        # the gateway and two children recover; one child stays down
        for region in REGIONS:
            await _send(client, region, _results([gateway, *healed], True, t0 + 3) + _results([stuck], False, t0 + 3))
        await _wait_for(lambda: _state_is(pool, gateway, "up"))
        for region in REGIONS:
            await _send(client, region, _results([stuck], False, t0 + 4))

        async def stuck_has_incident() -> bool:
            return await pool.fetchval("SELECT count(*) FROM incidents WHERE device_id = $1 AND resolved_at IS NULL",
                                       stuck) == 1
        await _wait_for(stuck_has_incident)
        incidents = await pool.fetch("SELECT device_id, kind, summary, resolved_at FROM incidents ORDER BY id")
        assert [(r["device_id"], r["kind"], r["resolved_at"] is None) for r in incidents] == [
            (gateway, "down", False), (stuck, "down", True)]
        assert "after its parent gw recovered" in incidents[1]["summary"]
        events = await pool.fetch("SELECT event_type, payload FROM webhook_deliveries WHERE id > $1 ORDER BY id",
                                  before)
        payloads = [(e["event_type"], e["payload"]) for e in events]
        payloads = [(t, json.loads(p) if isinstance(p, str) else p) for t, p in payloads]
        by_device = [(t, p["device"]["id"], p["state"]) for t, p in payloads]
        # no webhook for the children going down or (silently) coming back: the gateway's, and the stuck child's
        assert by_device == [("device.state_changed", gateway, "down"), ("device.state_changed", gateway, "up"),
                             ("incident.opened", stuck, "down")]
    finally:
        stop.set()
        await task


async def _all_up(pool: asyncpg.Pool, ids: list[int]) -> bool:
    states = await _states(pool)
    return all(states[i] == "up" for i in ids)


async def _all_down(pool: asyncpg.Pool, ids: list[int]) -> bool:
    states = await _states(pool)
    return all(states[i] == "down" for i in ids)


async def test_a_malformed_result_batch_is_dropped_and_does_not_block_the_rest(env):
    pool, client, devices = env
    ids = sorted(devices)
    await client.xadd(protocol.RESULTS_STREAM, {protocol.REGION_FIELD: "tokyo", protocol.RESULTS_FIELD: "{not json"})
    await client.xadd(protocol.RESULTS_STREAM, {protocol.REGION_FIELD: "tokyo", protocol.RESULTS_FIELD: "[[1]]"})
    t0 = time.time()
    for region in REGIONS:
        await _send(client, region, _results(ids, True, t0))
    evaluator = _evaluator(pool, client, devices)
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    try:
        await _wait_for(lambda: _all_state(pool, "up"))
        await _wait_for(lambda: _rollup_checks(pool, 3 * len(ids)))
    finally:
        stop.set()
        await task
    assert (await client.xpending(protocol.RESULTS_STREAM, protocol.RESULTS_GROUP))["pending"] == 0


async def test_children_of_a_silent_push_gateway_raise_no_incident_of_their_own(env):
    pool, client, _ = env
    tenant = await pool.fetchval("SELECT id FROM tenants")
    gateway = await pool.fetchval(
        "INSERT INTO devices (tenant_id, name, kind, state) VALUES ($1, 'gw', 'push', 'down') RETURNING id", tenant)
    child = await pool.fetchval("SELECT min(id) FROM devices WHERE kind = 'http'")
    orphan = await pool.fetchval("SELECT max(id) FROM devices WHERE kind = 'http'")
    await pool.execute("UPDATE devices SET parent_id = $1 WHERE id = $2", gateway, child)
    devices = await load_devices(pool)  # push devices are not scheduled, so only the evaluator's view knows
    evaluator = _evaluator(pool, client, devices)
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    try:
        t0 = time.time()
        for region in REGIONS:
            await _send(client, region, _results(sorted(devices), True, t0))
        await _wait_for(lambda: _state_is(pool, orphan, "up"))
        for k in (1, 2):
            for region in REGIONS:
                await _send(client, region, _results([child, orphan], False, t0 + 10 * k))
        await _wait_for(lambda: _state_is(pool, child, "down"))
        await _wait_for(lambda: _state_is(pool, orphan, "down"))
    finally:
        stop.set()
        await task
    incidents = {r["device_id"] for r in await pool.fetch("SELECT device_id FROM incidents")}
    assert incidents == {orphan}  # the device without a parent alerts; the child of the down gateway does not


async def test_a_stale_passing_result_after_newer_failures_is_history_not_state(env):
    """Issue 13: results are applied in probe-time order. A passing result probed before the failures that
    took the device DOWN, but delivered after them (its probe or its batch was slow), is counted in the
    rollups and changes neither the device, its region views nor its open incident."""
    pool, client, devices = env
    ids = sorted(devices)
    bad = ids[0]
    evaluator = _evaluator(pool, client, devices)
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    try:
        t0 = time.time()
        for region in REGIONS:
            await _send(client, region, _results(ids, True, t0))
        await _wait_for(lambda: _all_state(pool, "up"))
        for k in (1, 2):
            for region in REGIONS:
                await _send(client, region, _results([bad], False, t0 + 10 * k))
        await _wait_for(lambda: _state_is(pool, bad, "down"))
        for region in REGIONS:  # probed at t0 + 5, before both failures, delivered now
            await _send(client, region, _results([bad], True, t0 + 5))
        await _wait_for(lambda: _processed(evaluator, 3 * len(ids) + 9))
        await _wait_for(lambda: _rollup_checks(pool, 3 * len(ids) + 9))
    finally:
        stop.set()
        await task
    assert (await _states(pool))[bad] == "down"
    incidents = await pool.fetch("SELECT kind, resolved_at FROM incidents WHERE device_id = $1", bad)
    assert [(r["kind"], r["resolved_at"]) for r in incidents] == [("down", None)]
    views = await pool.fetch("SELECT last_ok, consecutive_failures FROM device_region_state WHERE device_id = $1", bad)
    assert [(v["last_ok"], v["consecutive_failures"]) for v in views] == [(False, 2)] * 3
    assert await pool.fetchval("SELECT sum(checks) - sum(failures) FROM rollups WHERE device_id = $1", bad) == 6
