"""The monitor consumer against a real Redis: batches in, results out, acks, reclaim of dead consumers."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
import redis.asyncio as aioredis
from egress_targets import TEST_EGRESS_ALLOW_CIDRS

from iot import protocol
from iot.egress import EgressPolicy
from iot.monitor.consumer import CheckConsumer, ensure_group
from iot.monitor.metrics import MonitorMetrics
from iot.monitor.probes import Prober

REGION = "frankfurt"
STREAM = protocol.checks_stream(REGION)


@pytest.fixture
async def setup(redis_url: str):
    client = aioredis.Redis.from_url(redis_url)
    prober = Prober("127.0.0.2", concurrency=100, egress=EgressPolicy.parse(TEST_EGRESS_ALLOW_CIDRS))
    await prober.start()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    yield client, prober, listener.getsockname()[1]
    listener.close()
    await prober.close()
    await client.aclose()


def _consumer(client, prober, name: str, reclaim_idle: float = 30.0) -> tuple[CheckConsumer, MonitorMetrics]:
    metrics = MonitorMetrics(REGION)
    return CheckConsumer(client, prober, metrics, region=REGION, instance=name, read_count=4,
                         inflight_batches=4, reclaim_idle_seconds=reclaim_idle), metrics


async def _results(client: aioredis.Redis) -> list[list]:
    rows: list[list] = []
    for _id, fields in await client.xrange(protocol.RESULTS_STREAM):
        assert fields[b"region"] == REGION.encode()
        rows.extend(json.loads(fields[b"results"]))
    return rows


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def test_batches_are_probed_written_back_in_batches_and_acknowledged(setup):
    client, prober, port = setup
    await ensure_group(client, STREAM, protocol.CHECKS_GROUP)
    for b in range(3):
        batch = [[b * 100 + i, "tcp", f"127.0.0.1:{port}", 1000] for i in range(100)]
        batch.append([b * 100 + 99, "tcp", "127.0.0.1:1", 1000])  # refused
        await client.xadd(STREAM, {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: "0"})
    consumer, metrics = _consumer(client, prober, "m1")
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await _until(lambda: _count(client, 303))
    stop.set()
    await task
    rows = await _results(client)
    assert await client.xlen(protocol.RESULTS_STREAM) == 3  # one XADD per batch
    failed = [r for r in rows if not r[1]]
    assert {r[0] for r in failed} == {99, 199, 299} and all(r[3] for r in failed)
    assert all(r[2] is not None for r in rows if r[1])
    pending = await client.xpending(STREAM, protocol.CHECKS_GROUP)
    assert pending["pending"] == 0
    assert metrics.checks_per_second() > 0 and metrics.last_batch_age_s() is not None


async def test_batch_left_by_a_dead_monitor_is_reclaimed_by_a_peer(setup):
    client, prober, port = setup
    await ensure_group(client, STREAM, protocol.CHECKS_GROUP)
    batch = [[i, "tcp", f"127.0.0.1:{port}", 1000] for i in range(50)]
    await client.xadd(STREAM, {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: "0"})
    # "dead" reads the batch and is killed before writing results
    taken = await client.xreadgroup(protocol.CHECKS_GROUP, "dead", {STREAM: ">"}, count=1)
    assert len(taken[0][1]) == 1
    consumer, metrics = _consumer(client, prober, "peer", reclaim_idle=0.2)
    await asyncio.sleep(0.3)
    assert await consumer.reclaim_once() == 1
    await _until(lambda: _count(client, 50))
    await _until(lambda: _pending(client, 0))
    assert sorted(r[0] for r in await _results(client)) == list(range(50))
    assert metrics.reclaimed._value.get() == 1


async def _count(client: aioredis.Redis, n: int) -> bool:
    return len(await _results(client)) >= n


async def _pending(client: aioredis.Redis, n: int) -> bool:
    return (await client.xpending(STREAM, protocol.CHECKS_GROUP))["pending"] == n


async def test_idle_consumers_of_restarted_monitors_are_forgotten(setup):
    client, prober, _ = setup
    await ensure_group(client, STREAM, protocol.CHECKS_GROUP)
    await client.xgroup_createconsumer(STREAM, protocol.CHECKS_GROUP, "old-instance")
    consumer, _ = _consumer(client, prober, "current")
    await client.xgroup_createconsumer(STREAM, protocol.CHECKS_GROUP, "current")
    await asyncio.sleep(0.05)
    assert await consumer.forget_dead_consumers(idle_seconds=0.01) == 1
    names = {c["name"] for c in await client.xinfo_consumers(STREAM, protocol.CHECKS_GROUP)}
    assert names == {b"current"}
