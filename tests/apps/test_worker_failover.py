"""Two workers against real Redis/PostgreSQL: one leads, the standby takes over after the leader dies,
and across the handover every device is dispatched exactly once per interval (no repeat, no gap)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter

import asyncpg
import redis.asyncio as aioredis

from iot import db, protocol
from iot.db.migrate import migrate
from iot.settings import WorkerSettings
from iot.worker import scheduler as scheduler_module
from iot.worker.main import WorkerService
from iot.worker.planner import phase_of
from iot.worker.scheduler import Scheduler

INTERVAL = 5


async def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _beat(client: aioredis.Redis, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await client.zadd(protocol.MONITOR_HEARTBEATS_KEY, {"frankfurt/m1": time.time()})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _pool_with_devices(database_url: str, count: int) -> asyncpg.Pool:
    """A migrated database holding `count` TCP devices of one tenant, checked every INTERVAL seconds."""
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('acme', 'h') RETURNING id")
    await pool.execute(
        "INSERT INTO devices (tenant_id, name, kind, target, interval_s, timeout_ms) "
        "SELECT $1, 'd' || i, 'tcp', '127.0.0.1:' || (20000 + i), $2, 1000 FROM generate_series(1, $3) i",
        tenant, INTERVAL, count,
    )
    return pool


async def test_standby_takes_over_and_no_device_is_dispatched_twice(database_url: str, redis_url: str):
    pool = await _pool_with_devices(database_url, 200)
    client = aioredis.Redis.from_url(redis_url)
    beats_stop = asyncio.Event()
    beats = asyncio.create_task(_beat(client, beats_stop))
    start_second = int(time.time()) + 1
    await client.set(protocol.WORKER_PLANNED_UNTIL_KEY, start_second - 1)

    settings = dict(database_url=database_url, redis_url=redis_url, lock_ttl_seconds=1.5, region_alive_seconds=5)
    pools = [await db.create_pool(database_url) for _ in range(2)]
    first = WorkerService(WorkerSettings(instance_id="first", **settings), client, pools[0])
    second = WorkerService(WorkerSettings(instance_id="second", **settings), client, pools[1])
    first_stop, second_stop = asyncio.Event(), asyncio.Event()
    first_task = asyncio.create_task(first.run(first_stop))
    await _until(lambda: _holder(client, "first"), 5, "first worker to lead")
    second_task = asyncio.create_task(second.run(second_stop))
    await _until(lambda: _planned_past(client, start_second + 2), 10, "the first leader to dispatch")
    assert (await second.status())["leader"] is False
    assert (await first.status())["devices_scheduled"] == 200

    first_task.cancel()  # the leader dies without releasing the lock
    with contextlib.suppress(asyncio.CancelledError):
        await first_task
    await _until(lambda: _holder(client, "second"), 10, "standby to take over after the lock expiry")
    await _until(lambda: _planned_past(client, start_second + 2 * INTERVAL), 4 * INTERVAL, "two intervals planned")

    second_stop.set()  # SIGTERM: finish the tick, release the lock
    await second_task
    assert await client.get(protocol.WORKER_LOCK_KEY) is None
    beats_stop.set()
    await beats

    last_second = int(await client.get(protocol.WORKER_PLANNED_UNTIL_KEY))
    assert last_second - start_second >= INTERVAL * 2
    seen: Counter[int] = Counter()
    for _id, fields in await client.xrange(protocol.checks_stream("frankfurt")):
        seen.update(check[0] for check in json.loads(fields[protocol.CHECKS_FIELD.encode()]))
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM devices")]
    expected = {
        i: sum(1 for s in range(start_second, last_second + 1) if s % INTERVAL == phase_of(i, INTERVAL)) for i in ids
    }
    assert dict(seen) == expected
    for p in (pool, *pools):
        await p.close()
    await client.aclose()


async def _planned_past(client: aioredis.Redis, second: int) -> bool:
    return int(await client.get(protocol.WORKER_PLANNED_UNTIL_KEY)) >= second


async def _holder(client: aioredis.Redis, instance: str) -> bool:
    raw = await client.get(protocol.WORKER_LOCK_KEY)
    return raw is not None and raw.decode().endswith(":" + instance)


async def test_a_catch_up_tick_that_crosses_a_second_boundary_dispatches_no_device_twice(
        database_url: str, redis_url: str, monkeypatch):
    """The new leader's first tick (a catch-up over the failover gap) is slowed past a second boundary, as a
    loaded machine or a slow Redis reply does. The next tick must not plan a second the catch-up already
    covered: every device gets one check per period (periods counted from each batch's `sent` stamp, as the
    monitors and the end-to-end failover test see it)."""
    pool = await _pool_with_devices(database_url, 60)
    client = aioredis.Redis.from_url(redis_url)
    await client.set(protocol.WORKER_LOCK_KEY, "7:new-leader")
    await client.zadd(protocol.MONITOR_HEARTBEATS_KEY, {"frankfurt/m1": time.time() + 60})
    # the dead leader planned up to 10 s ago: the catch-up spans every phase
    await client.set(protocol.WORKER_PLANNED_UNTIL_KEY, int(time.time()) - 10)

    real_live_regions = scheduler_module.live_regions

    async def slow_live_regions(*args, **kwargs):
        await asyncio.sleep(1.05 - time.time() % 1.0)  # the reply arrives just after the next second starts
        return await real_live_regions(*args, **kwargs)

    scheduler = Scheduler(client, pool, batch_size=500, tick_seconds=1.0, region_alive_seconds=60,
                          max_catchup_seconds=60)
    monkeypatch.setattr(scheduler_module, "live_regions", slow_live_regions)
    await scheduler.tick("7:new-leader")
    monkeypatch.setattr(scheduler_module, "live_regions", real_live_regions)
    for _ in range(3):  # the regular ticks that follow, on time
        await scheduler.tick("7:new-leader")
        await asyncio.sleep(1.01 - time.time() % 1.0)

    per_period: Counter[tuple[int, int]] = Counter()
    for _id, fields in await client.xrange(protocol.checks_stream("frankfurt")):
        sent = int(float(fields[protocol.SENT_FIELD.encode()]))
        for check in json.loads(fields[protocol.CHECKS_FIELD.encode()]):
            per_period[(check[0], (sent - phase_of(check[0], INTERVAL)) // INTERVAL)] += 1
    ids = {r["id"] for r in await pool.fetch("SELECT id FROM devices")}
    await pool.close()
    await client.aclose()
    assert {device for device, _period in per_period} == ids, "the catch-up did not check every device"
    doubled = sorted({device for (device, _period), n in per_period.items() if n > 1})
    assert not doubled, f"{len(doubled)} devices checked twice in one interval: {doubled}"
