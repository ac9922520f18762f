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
from iot.monitor.batches import Batch, decode, make_checks
from iot.monitor.consumer import CheckConsumer, ensure_group
from iot.monitor.metrics import MonitorMetrics
from iot.monitor.probes import Prober, ProbeResult
from iot.monitor.writer import ResultWriter

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


@pytest.fixture
def hanging():
    """A listener that accepts (kernel backlog) and never reads or answers: checks against it hang until
    their timeout, or fail fast once the test closes it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener
    listener.close()


def _consumer(client, prober, name: str, reclaim_idle: float = 30.0) -> tuple[CheckConsumer, MonitorMetrics]:
    metrics = MonitorMetrics(REGION)
    return CheckConsumer(client, prober, metrics, region=REGION, instance=name, read_count=4,
                         concurrency=100, reclaim_idle_seconds=reclaim_idle), metrics


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


async def test_batches_are_probed_written_back_in_groups_and_acknowledged(setup):
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
    # results are written in groups (one XADD per ~100 ms), not one message per check
    assert 1 <= await client.xlen(protocol.RESULTS_STREAM) <= 6
    assert sorted(r[0] for r in rows) == sorted(b * 100 + i for b in range(3) for i in [*range(100), 99])
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
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await _until(lambda: _count(client, 50))
    await _until(lambda: _pending(client, 0))
    stop.set()
    await task
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


async def test_a_hanging_check_does_not_hold_back_the_other_results_of_its_batch(setup, hanging):
    """Issue 13: results of a batch were written when its slowest check finished. Now each result is stored
    as it completes: the healthy checks' results are in the stream while the hanging one still runs, and
    the batch is acknowledged only once the hanging check has its result too."""
    client, prober, port = setup
    hang_port = hanging.getsockname()[1]
    await ensure_group(client, STREAM, protocol.CHECKS_GROUP)
    batch = [[1, "http", f"http://127.0.0.1:{hang_port}/", 8000, 1, 30]]
    batch += [[100 + i, "tcp", f"127.0.0.1:{port}", 1000, 2, 30] for i in range(20)]
    await client.xadd(STREAM, {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: str(time.time())})
    consumer, _ = _consumer(client, prober, "m1")
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await _until(lambda: _count(client, 20), timeout=30)
    rows = await _results(client)
    assert sorted(r[0] for r in rows) == [100 + i for i in range(20)], "the hanging check held its batch back"
    assert await _pending(client, 1), "acknowledged before the hanging check had a result"
    await _until(lambda: _count(client, 21), timeout=30)
    hang_row = next(r for r in await _results(client) if r[0] == 1)
    assert hang_row[1] == 0 and "timeout" in hang_row[3]
    await _until(lambda: _pending(client, 0))
    stop.set()
    await task


async def test_a_tenant_whose_checks_hang_holds_only_its_share_and_the_others_go_through(setup, hanging):
    """Issue 12 "fair monitors": tenant 1's 40 checks hang (accept, never answer). With 8 slots and a
    tenant share of 1/2 it holds 4 of them; tenant 2's 30 checks, queued behind in the same batch, all
    get their results while tenant 1's are still hanging."""
    client, prober, port = setup
    hang_port = hanging.getsockname()[1]
    await ensure_group(client, STREAM, protocol.CHECKS_GROUP)
    batch = [[i, "http", f"http://127.0.0.1:{hang_port}/{i}", 20_000, 1, 60] for i in range(40)]
    batch += [[100 + i, "tcp", f"127.0.0.1:{port}", 1000, 2, 60] for i in range(30)]
    await client.xadd(STREAM, {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: str(time.time())})
    metrics = MonitorMetrics(REGION)
    consumer = CheckConsumer(client, prober, metrics, region=REGION, instance="m1", concurrency=8,
                             tenant_share=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await _until(lambda: _count(client, 30), timeout=15)
    assert sorted(r[0] for r in await _results(client)) == [100 + i for i in range(30)]
    assert metrics.inflight.labels("socket")._value.get() == 4  # tenant 1 at its share, nothing more
    assert consumer.scheduler.queued == 36
    hanging.close()  # the hanging connections are reset: tenant 1's checks now fail fast
    stop.set()
    await asyncio.wait_for(task, 30)
    assert await _pending(client, 0) and len(await _results(client)) == 70


async def test_checks_that_could_not_start_before_their_next_interval_are_dropped_and_counted(setup):
    client, prober, port = setup
    await ensure_group(client, STREAM, protocol.CHECKS_GROUP)
    sent = time.time() - 100  # their devices' next checks (interval 30 s) are long due
    stale = [[i, "tcp", f"127.0.0.1:{port}", 1000, 1, 30] for i in range(10)]
    fresh = [[50 + i, "tcp", f"127.0.0.1:{port}", 1000, 1, 300] for i in range(5)]
    await client.xadd(STREAM, {protocol.CHECKS_FIELD: json.dumps(stale + fresh), protocol.SENT_FIELD: str(sent)})
    consumer, metrics = _consumer(client, prober, "m1")
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await _until(lambda: _count(client, 5))
    await _until(lambda: _pending(client, 0))  # acknowledged: the drops count as handled
    stop.set()
    await task
    assert sorted(r[0] for r in await _results(client)) == [50 + i for i in range(5)]  # no result for a drop
    assert metrics.dropped.labels("late")._value.get() == 10


async def test_a_burst_of_a_tenant_at_its_share_is_probed_in_full_when_there_is_time(setup, hanging):
    """Issue 13, a fleet with dead devices: 10% of a lone tenant's checks hang, so it is at its share of the
    monitor most of the time. Its checks used to be dropped ("overflow") as soon as more than QUEUE_CHECKS
    of them waited, although every one could start long before its device's next check was due: a burst
    of 60,000 such checks lost 72% of them. They are probed now; only a check that can no longer start in
    time is dropped (late)."""
    client, prober, port = setup
    hang_port = hanging.getsockname()[1]
    await ensure_group(client, STREAM, protocol.CHECKS_GROUP)
    sent = str(time.time())
    devices = []
    for b in range(10):
        batch = [[b * 100 + i, "http", f"http://127.0.0.1:{hang_port}/{i}", 400, 1, 300] for i in range(5)]
        batch += [[b * 100 + i, "tcp", f"127.0.0.1:{port}", 1000, 1, 300] for i in range(5, 50)]
        devices += [entry[0] for entry in batch]
        await client.xadd(STREAM, {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: sent})
    metrics = MonitorMetrics(REGION)
    consumer = CheckConsumer(client, prober, metrics, region=REGION, instance="m1", concurrency=8,
                             tenant_share=1, queue_checks=20)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await _until(lambda: _acknowledged(client, 10), timeout=30)
    stop.set()
    await task
    rows = await _results(client)
    assert metrics.dropped.labels("overflow")._value.get() == 0
    assert sorted(r[0] for r in rows) == sorted(devices), f"{500 - len(rows)} of 500 checks got no result"
    assert sum(1 for r in rows if not r[1]) == 50  # the hanging ones: failed at their timeout


async def test_waiting_checks_stay_bounded_and_only_the_tenant_at_its_share_loses_checks(setup, hanging):
    """The memory bound that replaces it: at most QUEUE_CHECKS_MAX checks wait in a monitor. Beyond it the
    oldest waiting checks of the tenant at its share with the longest queue are dropped and counted, so
    a tenant whose devices all hang cannot fill the monitor's memory nor cost anyone else a check."""
    client, prober, port = setup
    hang_port = hanging.getsockname()[1]
    await ensure_group(client, STREAM, protocol.CHECKS_GROUP)
    sent = str(time.time())
    for b in range(8):
        batch = [[b * 100 + i, "http", f"http://127.0.0.1:{hang_port}/{i}", 20_000, 1, 300] for i in range(25)]
        batch += [[5000 + b * 100 + i, "tcp", f"127.0.0.1:{port}", 1000, 2, 300] for i in range(5)]
        await client.xadd(STREAM, {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: sent})
    metrics = MonitorMetrics(REGION)
    consumer = CheckConsumer(client, prober, metrics, region=REGION, instance="m1", concurrency=8,
                             tenant_share=0.5, queue_checks=20, queue_checks_max=60)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await _until(lambda: _count(client, 40), timeout=15)  # tenant 2's 40 checks, all of them
    await _until(lambda: _quiet(client, consumer, 8))
    assert sorted(r[0] for r in await _results(client)) == [5000 + b * 100 + i for b in range(8) for i in range(5)]
    waiting = consumer.scheduler.queued  # tenant 1's only, now: how many depends on when batches were read
    assert 20 <= waiting <= 60
    assert metrics.inflight.labels("socket")._value.get() == 4  # tenant 1 at its share
    assert metrics.dropped.labels("overflow")._value.get() == 200 - 4 - waiting
    hanging.close()  # tenant 1's hanging checks now fail fast
    stop.set()
    await asyncio.wait_for(task, 30)
    assert await _pending(client, 0)
    assert len(await _results(client)) == 40 + 4 + waiting  # a dropped check has no result row


async def _quiet(client: aioredis.Redis, consumer: CheckConsumer, batches: int) -> bool:
    """Every batch of the stream taken and nothing left to write."""
    group = (await client.xinfo_groups(STREAM))[0]
    return group["entries-read"] == batches and consumer.writer.buffered == 0


async def _acknowledged(client: aioredis.Redis, batches: int) -> bool:
    """The group has read `batches` batches and has none pending: every one of them is handled."""
    group = (await client.xinfo_groups(STREAM))[0]
    return group["entries-read"] == batches and group["pending"] == 0


async def test_a_backlog_of_results_goes_out_in_one_round_trip_not_in_slices_of_the_group_size(redis_url: str):
    """When results complete faster than round trips to Redis return (a busy machine: 100-500 ms each in
    bench/side_by_side.py's sustained condition), groups of RESULT_FLUSH_MAX (500) made one round trip per 500
    results the limit: results waited in the buffer for seconds, and no check started while it was full. A
    backlog now goes out in one group of up to 8 x RESULT_FLUSH_MAX."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await ensure_group(client, STREAM, protocol.CHECKS_GROUP)
        for b in range(4):
            batch = [[b * 1000 + i, "tcp", "127.0.0.1:9", 1000, 1, 300] for i in range(500)]
            await client.xadd(STREAM, {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: str(time.time())})
        reply = await client.xreadgroup(protocol.CHECKS_GROUP, "m1", {STREAM: ">"}, count=4)
        writer = ResultWriter(client, MonitorMetrics(REGION), region=REGION, instance="m1", flush_max=500)
        started = time.time()
        for message_id, fields in reply[0][1]:
            decoded = decode(fields)
            for check in make_checks(Batch(message_id.decode(), 500, 500), decoded):
                writer.add(check, ProbeResult(True, 1.5), started)  # 2,000 results ready at once
        stop = asyncio.Event()
        stop.set()  # write what is buffered, then return
        await asyncio.wait_for(writer.run(stop), 10)
        assert await client.xlen(protocol.RESULTS_STREAM) == 1
        assert len(await _results(client)) == 2000
        assert await _pending(client, 0)
    finally:
        await client.aclose()
