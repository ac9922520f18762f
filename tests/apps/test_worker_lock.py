"""Leader lock, fencing and dispatch against a real Redis."""

from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio as aioredis

from iot import protocol
from iot.worker.dispatch import Dispatcher
from iot.worker.lock import LeaderLock


async def test_only_one_leader_and_standby_takes_over_after_expiry(redis_url: str):
    client = aioredis.Redis.from_url(redis_url)
    first = LeaderLock(client, "w1", ttl_seconds=0.5)
    second = LeaderLock(client, "w2", ttl_seconds=0.5)
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.renew()
    # w1 dies without releasing: after expiry w2 takes over with a larger fencing number
    deadline = time.monotonic() + 5
    while not await second.acquire():
        assert time.monotonic() < deadline, "standby never took over"
        await asyncio.sleep(0.05)
    assert second.fence > first.fence
    # the old leader notices it lost the lock and cannot release the new leader's lock
    assert not await first.renew()
    await first.release()
    assert (await client.get(protocol.WORKER_LOCK_KEY)).decode() == second.token
    await second.release()
    assert await client.get(protocol.WORKER_LOCK_KEY) is None
    await client.aclose()


async def test_old_leader_cannot_dispatch_after_losing_the_lock(redis_url: str):
    client = aioredis.Redis.from_url(redis_url)
    old = LeaderLock(client, "old", ttl_seconds=10)
    assert await old.acquire()
    dispatcher = Dispatcher(client)
    payloads = [json.dumps([[1, "http", "http://x", 1000]]), json.dumps([[2, "tcp", "h:1", 1000]])]
    sent = await dispatcher.dispatch(old.token, ["frankfurt", "tokyo"], payloads, planned_until=100)
    assert (sent.batches, sent.fenced_out) == (4, 0)
    assert await client.xlen(protocol.checks_stream("tokyo")) == 2
    assert await client.get(protocol.WORKER_PLANNED_UNTIL_KEY) == b"100"

    await client.delete(protocol.WORKER_LOCK_KEY)  # lock expired while "old" was paused
    new = LeaderLock(client, "new", ttl_seconds=10)
    assert await new.acquire()
    refused = await dispatcher.dispatch(old.token, ["frankfurt", "tokyo"], payloads, planned_until=200)
    assert (refused.batches, refused.fenced_out) == (0, 4)
    assert await client.xlen(protocol.checks_stream("tokyo")) == 2
    assert await client.get(protocol.WORKER_PLANNED_UNTIL_KEY) == b"100"
    await client.aclose()


async def test_a_batch_is_stamped_within_the_second_it_was_planned_up_to(redis_url: str):
    """A plan ending at second 100 read at 100.9996 must not be stamped 101.000 (rounding would put the batch
    in the next second, which the next tick plans again)."""
    client = aioredis.Redis.from_url(redis_url)
    lock = LeaderLock(client, "leader", ttl_seconds=10)
    assert await lock.acquire()
    payloads = [json.dumps([[1, "http", "http://x", 1000]])]
    await Dispatcher(client).dispatch(lock.token, ["frankfurt"], payloads, planned_until=100, sent=100.9996)
    [(_id, fields)] = await client.xrange(protocol.checks_stream("frankfurt"))
    assert fields[protocol.SENT_FIELD.encode()] == b"100.999"
    await client.aclose()
