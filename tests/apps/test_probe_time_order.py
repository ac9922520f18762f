"""Issue 13, the flap: monitor consumers of three regions and the evaluator, in one process, against real
Redis and PostgreSQL and a real HTTP device.

The device answers its first probe from every region slowly with 200, then fails every later probe at
once. The failures take it DOWN; the slow 200s, probed BEFORE the failures, arrive after them. They must
not bring the device back UP (a second incident per flap), which is what happened when a result carried
the time its batch was written instead of the time its probe ran.
"""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from egress_targets import TEST_EGRESS_ALLOW_CIDRS

from iot import db, protocol
from iot.db.migrate import migrate
from iot.egress import EgressPolicy
from iot.monitor.consumer import CheckConsumer, ensure_group
from iot.monitor.metrics import MonitorMetrics
from iot.monitor.probes import Prober
from iot.worker.catalog import load_devices
from iot.worker.evaluator import Evaluator
from iot.worker.state import Thresholds

REGIONS = ("ashburn", "frankfurt", "tokyo")
SLOW_S = 3.0


@pytest.fixture
async def device_server():
    requests: list[float] = []

    async def handle(_request: web.Request) -> web.Response:
        requests.append(time.time())
        if len(requests) <= len(REGIONS):  # the first probe of each region: slow, but healthy
            await asyncio.sleep(SLOW_S)
            return web.Response(text="ok")
        return web.Response(status=500, text="broken")

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/", requests
    await runner.cleanup()


async def _until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def test_a_slow_healthy_probe_that_ends_after_newer_failures_does_not_bring_a_down_device_up(
        database_url: str, redis_url: str, device_server):
    url, requests = device_server
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    client = aioredis.Redis.from_url(redis_url)
    prober = Prober("127.0.0.2", concurrency=50, egress=EgressPolicy.parse(TEST_EGRESS_ALLOW_CIDRS))
    await prober.start()
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('flap', 'h') RETURNING id")
        device = await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target, interval_s, timeout_ms) "
                                     "VALUES ($1, 'pump', 'http', $2, 10, 5000) RETURNING id", tenant, url)
        devices = await load_devices(pool)
        for region in REGIONS:
            await client.zadd(protocol.MONITOR_HEARTBEATS_KEY, {f"{region}/m1": time.time()})
            await ensure_group(client, protocol.checks_stream(region), protocol.CHECKS_GROUP)
            consumer = CheckConsumer(client, prober, MonitorMetrics(region), region=region, instance="m1",
                                     concurrency=50)
            tasks.append(asyncio.create_task(consumer.run(stop)))
        evaluator = Evaluator(client, pool, lambda: devices, Thresholds(quorum_min=2, failures_to_down=2),
                              instance="w1", region_alive_seconds=120, flush_seconds=0.2)
        await evaluator.load()
        tasks.append(asyncio.create_task(evaluator.run(stop, lambda: True)))

        async def dispatch() -> None:
            entry = [device, "http", url, 5000, tenant, 10]
            for region in REGIONS:
                await client.xadd(protocol.checks_stream(region), {
                    protocol.CHECKS_FIELD: json.dumps([entry]), protocol.SENT_FIELD: f"{time.time():.3f}"})

        async def requests_seen(n: int) -> bool:
            return len(requests) >= n

        async def state() -> str:
            return await pool.fetchval("SELECT state FROM devices WHERE id = $1", device)

        for round_ in range(1, 4):  # the slow healthy round, then two failing rounds while it still runs
            await dispatch()
            await _until(lambda n=round_: requests_seen(n * len(REGIONS)))
        await _until(lambda: _is(state, "down"))
        assert time.time() - requests[0] < SLOW_S, "the failures must land while the healthy probes still run"
        # the three slow 200s arrive now, after the failures; every result is evaluated
        await _until(lambda: _true(evaluator.results_processed >= 3 * len(REGIONS)))
        await _until(lambda: _stored(pool, 3 * len(REGIONS)))
        assert await state() == "down"
        incidents = await pool.fetch("SELECT kind, resolved_at FROM incidents WHERE device_id = $1", device)
        assert [(r["kind"], r["resolved_at"]) for r in incidents] == [("down", None)], "the device flapped"
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await prober.close()
        await client.delete(protocol.MONITOR_HEARTBEATS_KEY)  # no live "regions" left for later tests
        await client.aclose()
        await pool.close()


async def _is(read, value: str) -> bool:
    return await read() == value


async def _true(value: bool) -> bool:
    return value


async def _stored(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT coalesce(sum(checks), 0) FROM rollups") >= n
