"""The monitor's work loop: take check batches of its region, probe each check, store results as they
complete, acknowledge a batch once all its checks are stored.

- Batches are read through the region's consumer group, so each is pending on exactly one monitor. The
  monitor takes more while few of its waiting checks could start (`queue_checks`), so the peers of a
  region share the work and memory stays bounded.
  A tenant at its share does not count (its backlog must not stop the monitor from taking everyone
  else's checks); `queue_checks_max` bounds the checks waiting in all.
- Checks of all held batches go to the `FairScheduler` (concurrency per check, fair between tenants);
  results go to the `ResultWriter` (small groups, exactly once, acknowledgement when a batch is complete).
- Held batches are touched every `reclaim_idle_seconds / 3`, so a batch with a 60 s check is not taken for
  abandoned; batches idle longer (their monitor died) are taken over with XAUTOCLAIM, and only their checks
  without a stored result are probed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from iot import protocol
from iot.log import log_fields
from iot.monitor.batches import Batch, decode, make_checks, stored_indexes
from iot.monitor.metrics import MonitorMetrics
from iot.monitor.probes import Prober
from iot.monitor.scheduler import FairScheduler
from iot.monitor.writer import ResultWriter

logger = logging.getLogger(__name__)


async def ensure_group(client: aioredis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists; safe for concurrent callers."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class CheckConsumer:
    def __init__(
        self,
        client: aioredis.Redis,
        prober: Prober,
        metrics: MonitorMetrics,
        *,
        region: str,
        instance: str,
        read_count: int = 4,
        concurrency: int = 1000,
        icmp_concurrency: int = 10_000,
        tenant_share: float = 0.25,
        queue_checks: int = 5000,
        queue_checks_max: int = 100_000,
        reclaim_idle_seconds: float = 30.0,
        flush_seconds: float = 0.1,
        flush_max: int = 500,
        result_buffer_max: int = 10_000,
    ) -> None:
        self._redis = client
        self._metrics = metrics
        self.region = region
        self.instance = instance
        self.stream = protocol.checks_stream(region)
        self._read_count = read_count
        self._queue_checks = queue_checks
        self._reclaim_idle_ms = int(reclaim_idle_seconds * 1000)
        self.writer = ResultWriter(client, metrics, region=region, instance=instance, flush_seconds=flush_seconds,
                                   flush_max=flush_max, buffer_max=result_buffer_max)
        self.scheduler = FairScheduler(prober, self.writer, metrics, concurrency=concurrency,
                                       icmp_concurrency=icmp_concurrency, tenant_share=tenant_share,
                                       queue_max=queue_checks_max)
        self.writer.on_settled = self._settled
        self.held: dict[str, Batch] = {}
        self._accepting = True

    def has_room(self) -> bool:
        return self.scheduler.runnable_queued() < self._queue_checks and self.writer.has_room()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then finish (probe, store, acknowledge) every batch already taken."""
        await self._with_retry(lambda: ensure_group(self._redis, self.stream, protocol.CHECKS_GROUP), stop)
        finished = asyncio.Event()
        writing = asyncio.create_task(self.writer.run(finished))
        upkeep = asyncio.create_task(self._upkeep_loop(finished))
        try:
            await self._read_loop(stop)
        finally:
            self._accepting = False
            self.writer.shutting_down = True
            if self.held:
                log_fields(logger, logging.INFO, "finishing held batches", batches=len(self.held),
                           queued=self.scheduler.queued, in_flight=self.scheduler.inflight)
            await self.scheduler.wait_idle()
            finished.set()
            await writing
            upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upkeep

    async def _read_loop(self, stop: asyncio.Event) -> None:
        delay = 0.2
        while not stop.is_set():
            if not self.has_room():
                await _sleep_or_stop(stop, 0.01)  # a poll: ~100 cheap wake-ups per second while full
                continue
            try:
                reply = await self._redis.xreadgroup(
                    protocol.CHECKS_GROUP, self.instance, {self.stream: ">"},
                    # A jittered block: monitors of one region that time out in step with the worker's
                    # once-a-second dispatch would otherwise let one of them take every batch.
                    count=self._read_count, block=random.randint(700, 1300),
                )
                delay = 0.2
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # stream deleted (e.g. Redis restarted empty): recreate
                    await self._with_retry(
                        lambda: ensure_group(self._redis, self.stream, protocol.CHECKS_GROUP), stop
                    )
                    continue
                raise
            except (RedisError, OSError) as exc:
                log_fields(logger, logging.WARNING, "redis read failed, retrying", error=str(exc), retry_in_s=delay)
                await _sleep_or_stop(stop, delay)
                delay = min(delay * 2, 5.0)
                continue
            for _stream, messages in reply or []:
                for message_id, fields in messages:
                    self._take(_as_str(message_id), fields, bitmap=None)

    def _take(self, message_id: str, fields: dict[Any, Any], bitmap: bytes | None) -> bool:
        """Hold a batch and queue its checks (those without a stored result, for a reclaimed one)."""
        if message_id in self.held:
            return False
        try:
            decoded = decode(fields)
        except (ValueError, TypeError) as exc:
            log_fields(logger, logging.ERROR, "malformed check batch, acknowledging it unprobed",
                       id=message_id, error=str(exc))
            decoded = None
        size = len(decoded.entries) if decoded is not None else 0
        skip = stored_indexes(bitmap, size)
        batch = Batch(message_id, size, size - len(skip))
        self.held[message_id] = batch
        self._metrics.held_batches.set(len(self.held))
        if decoded is None or batch.remaining == 0:
            self.writer.finalize(batch)  # nothing (left) to probe: acknowledge it
            return True
        try:
            checks = make_checks(batch, decoded, skip)
        except (ValueError, TypeError, IndexError) as exc:
            log_fields(logger, logging.ERROR, "malformed check entry, acknowledging the batch unprobed",
                       id=message_id, error=str(exc))
            batch.size = 0
            self.writer.finalize(batch)
            return True
        self.scheduler.submit(checks)
        return True

    def _settled(self, acked: list[str], lost: list[str]) -> None:
        for message_id in acked:
            self.held.pop(message_id, None)
        if lost:
            for message_id in lost:
                batch = self.held.pop(message_id, None)
                if batch is not None:
                    batch.lost = True
            self.scheduler.forget_lost()
        self._metrics.held_batches.set(len(self.held))

    # ---- upkeep: touch held batches, drop late checks, take over abandoned batches ------------------

    async def _upkeep_loop(self, finished: asyncio.Event) -> None:
        touch_every = max(0.5, self._reclaim_idle_ms / 3000.0)
        reclaim_every = max(1.0, self._reclaim_idle_ms / 3000.0)
        loop = asyncio.get_running_loop()
        next_touch = next_reclaim = loop.time()
        while not finished.is_set():
            await _sleep_or_stop(finished, 1.0 if touch_every >= 1.0 else touch_every)
            self.scheduler.expire()
            try:
                if loop.time() >= next_touch:
                    next_touch = loop.time() + touch_every
                    await self.touch_held()
                if self._accepting and loop.time() >= next_reclaim:
                    next_reclaim = loop.time() + reclaim_every
                    await self.reclaim_once()
                    await self.forget_dead_consumers()
            except (RedisError, OSError) as exc:
                log_fields(logger, logging.WARNING, "batch upkeep failed", error=str(exc))

    async def touch_held(self) -> None:
        async with self.writer.lock:
            lost = await self.writer.touch(list(self.held))
        if lost:
            log_fields(logger, logging.WARNING, "held batches were taken over by another monitor", count=len(lost))
            self._settled([], lost)

    async def reclaim_once(self) -> int:
        """Take over batches idle on other consumers; returns how many were taken."""
        started = 0
        cursor = "0-0"
        while self.has_room():
            reply = await self._redis.xautoclaim(
                self.stream, protocol.CHECKS_GROUP, self.instance, self._reclaim_idle_ms,
                start_id=cursor, count=max(1, self._read_count),
            )
            cursor, messages = _as_str(reply[0]), reply[1]
            for message_id, fields in messages:
                if fields is None:  # trimmed away; XAUTOCLAIM already dropped it from the pending list
                    continue
                mid = _as_str(message_id)
                if mid in self.held:
                    continue
                bitmap = await self._redis.get(protocol.stored_bitmap_prefix(self.region) + mid)
                self._metrics.reclaimed.inc()
                log_fields(logger, logging.INFO, "reclaimed batch from a dead consumer", id=mid,
                           already_stored=len(stored_indexes(bitmap, 1 << 20)))
                if self._take(mid, fields, bitmap):
                    started += 1
            if cursor == "0-0":
                break
        return started

    async def forget_dead_consumers(self, idle_seconds: float = 3600.0) -> int:
        """Drop consumers of restarted monitors (new instance names) once idle with nothing pending."""
        removed = 0
        for consumer in await self._redis.xinfo_consumers(self.stream, protocol.CHECKS_GROUP):
            name = _as_str(consumer["name"])
            if name != self.instance and consumer["pending"] == 0 and consumer["idle"] > idle_seconds * 1000:
                await self._redis.xgroup_delconsumer(self.stream, protocol.CHECKS_GROUP, name)
                removed += 1
        return removed

    async def _with_retry(self, make: Any, stop: asyncio.Event) -> None:
        delay = 0.2
        while True:
            try:
                await make()
                return
            except (RedisError, OSError) as exc:
                if stop.is_set():
                    raise
                log_fields(logger, logging.WARNING, "redis not reachable, retrying", error=str(exc), retry_in_s=delay)
                await _sleep_or_stop(stop, delay)
                delay = min(delay * 2, 5.0)


def _as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
