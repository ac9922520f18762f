"""The monitor's work loop: read check batches of its region, probe them, write results, acknowledge.

Delivery is at-least-once and nothing is lost when a monitor dies:
- batches are read through the region's consumer group, so each is pending on exactly one monitor;
- the result batch is written and the check batch acknowledged in ONE MULTI/EXEC, so a batch is either
  pending (and will be probed again) or has its results stored, never acknowledged without results;
- batches idle on another consumer (a dead monitor) for `reclaim_idle_seconds` are taken over with
  XAUTOCLAIM by the live monitors of the region.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from iot import protocol
from iot.log import log_fields
from iot.monitor.metrics import MonitorMetrics
from iot.monitor.probes import Prober, ProbeResult

logger = logging.getLogger(__name__)

Check = tuple[int, str, str, int]  # device_id, kind, target, timeout_ms


def decode_checks(fields: dict[Any, Any]) -> list[Check]:
    raw = fields.get(protocol.CHECKS_FIELD) or fields.get(protocol.CHECKS_FIELD.encode())
    if raw is None:
        return []
    return [(int(c[0]), str(c[1]), str(c[2]), int(c[3])) for c in json.loads(raw)]


def encode_results(checks: list[Check], results: list[ProbeResult], checked_at: float) -> str:
    rows = [
        [check[0], 1 if res.ok else 0, res.latency_ms, res.error, checked_at]
        for check, res in zip(checks, results, strict=True)
    ]
    return json.dumps(rows, separators=(",", ":"))


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
        inflight_batches: int = 8,
        reclaim_idle_seconds: float = 30.0,
    ) -> None:
        self._redis = client
        self._prober = prober
        self._metrics = metrics
        self.region = region
        self.instance = instance
        self.stream = protocol.checks_stream(region)
        self._read_count = read_count
        self._max_inflight = inflight_batches
        self._reclaim_idle_ms = int(reclaim_idle_seconds * 1000)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._stop: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then finish (probe, write, ack) every batch already taken."""
        self._stop = stop
        await self._with_retry(lambda: ensure_group(self._redis, self.stream, protocol.CHECKS_GROUP), stop)
        reclaimer = asyncio.create_task(self._reclaim_loop(stop))
        try:
            await self._read_loop(stop)
        finally:
            reclaimer.cancel()
            if self._inflight:
                log_fields(logger, logging.INFO, "finishing in-flight batches", batches=len(self._inflight))
                await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def _read_loop(self, stop: asyncio.Event) -> None:
        delay = 0.2
        while not stop.is_set():
            room = self._max_inflight - len(self._inflight)
            if room <= 0:
                await asyncio.wait(list(self._inflight.values()), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                reply = await self._redis.xreadgroup(
                    protocol.CHECKS_GROUP, self.instance, {self.stream: ">"},
                    # A jittered block: monitors of one region that time out in step with the worker's
                    # once-a-second dispatch would otherwise let one of them take every batch.
                    count=min(room, self._read_count), block=random.randint(700, 1300),
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
                    self._start(_as_str(message_id), fields)

    def _start(self, message_id: str, fields: dict[Any, Any]) -> None:
        if message_id in self._inflight:
            return
        task = asyncio.create_task(self._process(message_id, fields))
        self._inflight[message_id] = task
        self._metrics.inflight.set(len(self._inflight))
        task.add_done_callback(lambda _t: self._finished(message_id))

    def _finished(self, message_id: str) -> None:
        self._inflight.pop(message_id, None)
        self._metrics.inflight.set(len(self._inflight))

    async def _process(self, message_id: str, fields: dict[Any, Any]) -> None:
        try:
            checks = decode_checks(fields)
        except (ValueError, TypeError, IndexError) as exc:
            log_fields(logger, logging.ERROR, "malformed check batch, dropping", id=message_id, error=str(exc))
            await self._redis.xack(self.stream, protocol.CHECKS_GROUP, message_id)
            return
        results = await self._prober.check_batch(
            [(kind, target, timeout_ms / 1000.0) for _, kind, target, timeout_ms in checks]
        )
        payload = encode_results(checks, results, round(time.time(), 3))
        await self._write_and_ack(message_id, payload)
        self._metrics.record_batch(
            [(check[1], res.ok, res.latency_ms) for check, res in zip(checks, results, strict=True)]
        )

    async def _write_and_ack(self, message_id: str, payload: str) -> None:
        """Results XADD and check XACK atomically; retried with backoff until Redis takes them."""
        delay = 0.2
        while True:
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(
                        protocol.RESULTS_STREAM,
                        {
                            protocol.RESULTS_FIELD: payload,
                            protocol.REGION_FIELD: self.region,
                            protocol.INSTANCE_FIELD: self.instance,
                        },
                        maxlen=protocol.RESULTS_STREAM_MAXLEN, approximate=True,
                    )
                    pipe.xack(self.stream, protocol.CHECKS_GROUP, message_id)
                    await pipe.execute()
                return
            except (RedisError, OSError) as exc:
                self._metrics.write_errors.inc()
                if self._stop is not None and self._stop.is_set() and delay >= 5.0:
                    # Shutting down and Redis stays away: leave the batch pending; a peer (or this
                    # monitor's successor) reclaims and probes it again. Nothing is lost.
                    log_fields(logger, logging.WARNING, "giving up on a batch at shutdown", id=message_id)
                    return
                log_fields(logger, logging.WARNING, "writing results failed, retrying",
                           id=message_id, error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _reclaim_loop(self, stop: asyncio.Event) -> None:
        period = max(1.0, self._reclaim_idle_ms / 3000.0)
        while not stop.is_set():
            await _sleep_or_stop(stop, period)
            if stop.is_set():
                return
            try:
                await self.reclaim_once()
                await self.forget_dead_consumers()
            except (RedisError, OSError) as exc:
                log_fields(logger, logging.WARNING, "reclaim failed", error=str(exc))

    async def reclaim_once(self) -> int:
        """Take over batches idle on other consumers; returns how many were started."""
        started = 0
        cursor = "0-0"
        while self._max_inflight - len(self._inflight) > 0:
            reply = await self._redis.xautoclaim(
                self.stream, protocol.CHECKS_GROUP, self.instance, self._reclaim_idle_ms,
                start_id=cursor, count=self._max_inflight - len(self._inflight),
            )
            cursor, messages = _as_str(reply[0]), reply[1]
            for message_id, fields in messages:
                if fields is None:  # trimmed away; XAUTOCLAIM already dropped it from the pending list
                    continue
                mid = _as_str(message_id)
                if mid not in self._inflight:
                    self._metrics.reclaimed.inc()
                    log_fields(logger, logging.INFO, "reclaimed batch from a dead consumer", id=mid)
                    self._start(mid, fields)
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
