"""Issue 12 case 2 / issue 13: check streams give their memory back when devices go away.

30 devices with 256 KiB targets (inserted directly: the API's own length cap is not what is tested) are
scheduled for two regions by the real scheduler against real Redis and PostgreSQL; a stand-in monitor
takes and acknowledges every batch. Redis memory grows while they exist and comes back to where it was
once they are deleted, instead of staying until 20,000 messages per region have gone by.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from iot import db, protocol
from iot.db.migrate import migrate
from iot.monitor.consumer import ensure_group
from iot.worker.scheduler import Scheduler
from iot.worker.trim import StreamTrimmer

REGIONS = ("ashburn", "tokyo")
TOKEN = "1:test-leader"
KEEP_S = 3.0


async def _used_memory(client: aioredis.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def _monitor_stand_in(client: aioredis.Redis) -> None:
    """Take and acknowledge every batch, as the region's monitors do."""
    for region in REGIONS:
        stream = protocol.checks_stream(region)
        reply = await client.xreadgroup(protocol.CHECKS_GROUP, "m1", {stream: ">"}, count=1000)
        for _stream, messages in reply or []:
            if messages:
                await client.xack(stream, protocol.CHECKS_GROUP, *[m for m, _f in messages])


async def _run_ticks(scheduler: Scheduler, client: aioredis.Redis, seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        await scheduler.tick(TOKEN)
        await _monitor_stand_in(client)
        await asyncio.sleep(0.25)


# Targets at the API's length limit (2,048 characters, issue 12), on enough devices to hold megabytes.
BIG_DEVICES = 3000
BIG_TARGET_CHARS = 2000


async def test_check_streams_free_the_memory_of_deleted_devices(database_url: str, redis_url: str):
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.flushall()
        await client.set(protocol.WORKER_LOCK_KEY, TOKEN)
        for region in REGIONS:
            await client.zadd(protocol.MONITOR_HEARTBEATS_KEY, {f"{region}/m1": time.time()})
            await ensure_group(client, protocol.checks_stream(region), protocol.CHECKS_GROUP)
        scheduler = Scheduler(client, pool, batch_size=500, tick_seconds=1.0, region_alive_seconds=60,
                              max_catchup_seconds=5, batch_max_bytes=1024 * 1024,
                              trimmer=StreamTrimmer(client, keep_s=KEEP_S, max_age_s=600))
        await scheduler.tick(TOKEN)
        baseline = await _used_memory(client)

        tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('big', 'h') RETURNING id")
        await pool.execute(
            "INSERT INTO devices (tenant_id, name, kind, target, interval_s, timeout_ms) "
            "SELECT $1, 'big-' || i, 'http', 'http://127.0.0.1/' || repeat('x', $2), 5, 1000 "
            "FROM generate_series(1, $3) i", tenant, BIG_TARGET_CHARS - len("http://127.0.0.1/"), BIG_DEVICES)
        await client.incr(protocol.DEVICES_VERSION_KEY)
        await _run_ticks(scheduler, client, 8)
        loaded = await _used_memory(client)

        await pool.execute("DELETE FROM devices WHERE tenant_id = $1", tenant)
        await client.incr(protocol.DEVICES_VERSION_KEY)
        await _run_ticks(scheduler, client, KEEP_S + 3)
        after = await _used_memory(client)
    finally:
        await client.delete(protocol.MONITOR_HEARTBEATS_KEY)  # no live "regions" left for later tests
        await client.aclose()
        await pool.close()
    mib = 1024 * 1024
    print(f"Redis used_memory: {baseline / mib:.1f} MiB before, {loaded / mib:.1f} MiB with the devices, "
          f"{after / mib:.1f} MiB {KEEP_S + 3:g} s after deleting them")
    assert loaded - baseline > 5 * mib, "the devices' batches never reached Redis; nothing was tested"
    assert after - baseline < 1 * mib, f"{(after - baseline) / mib:.1f} MiB still held after the devices went away"
