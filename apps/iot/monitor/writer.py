"""Results leave the monitor as they complete: buffered, then written in small groups, exactly once.

A group (every `flush_seconds` or `flush_max` results, whichever first; a backlog that piled up while the
previous group was written goes out whole, up to `BACKLOG_GROUPS` x `flush_max`) is ONE Redis round trip: a Lua
script that, atomically and per check batch,
- writes nothing for a batch this monitor no longer holds (another monitor reclaimed it: its results are
  that monitor's to write), so a paused monitor that wakes up cannot double a result;
- marks each check in the batch's stored-results bitmap (`checks:<region>:stored:<message id>`) and writes
  its result only if the bit was clear, so a check is never stored twice;
- acknowledges the batch (XACK) and deletes its bitmap once every check of it is marked.
All results of the group go into one XADD. A monitor killed at any point leaves each batch either
acknowledged or pending with a bitmap saying which checks are stored; whoever reclaims it probes only
the others. Nothing is lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from iot import protocol
from iot.log import log_fields
from iot.monitor.batches import Batch, Check
from iot.monitor.metrics import MonitorMetrics
from iot.monitor.probes import ProbeResult

logger = logging.getLogger(__name__)

# KEYS[1] checks stream, KEYS[2] results stream. ARGV[1] group, ARGV[2] consumer, ARGV[3] results maxlen,
# ARGV[4] region, ARGV[5] instance, ARGV[6] bitmap key prefix, ARGV[7] bitmap ttl, ARGV[8] batches; then
# per batch: message id, batch size, check indexes ("3,5,9"), and their rows, one per line in the same
# order ('-' for a dropped check: marked, no row). One string per batch, not one argument per check: the
# monitor spends its CPU on probes, not on encoding commands. Returns {acknowledged ids, ids held by
# another consumer}.
STORE_RESULTS = f"""
local rows, acked, lost = {{}}, {{}}, {{}}
local a = 9
for _ = 1, tonumber(ARGV[8]) do
  local id, size, indexes, lines = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  a = a + 4
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)[1]
  if entry and entry[2] == ARGV[2] then
    local key = ARGV[6] .. id
    local next_line = string.gmatch(lines, '[^\\n]+')
    for index in string.gmatch(indexes, '%d+') do
      local row = next_line()
      if redis.call('SETBIT', key, tonumber(index), 1) == 0 and row ~= '-' then
        rows[#rows + 1] = row
      end
    end
    if redis.call('BITCOUNT', key) >= size then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('DEL', key)
      acked[#acked + 1] = id
    else
      redis.call('EXPIRE', key, ARGV[7])
    end
  else
    lost[#lost + 1] = id
  end
end
if #rows > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', '{protocol.RESULTS_FIELD}',
             '[' .. table.concat(rows, ',') .. ']', '{protocol.REGION_FIELD}', ARGV[4],
             '{protocol.INSTANCE_FIELD}', ARGV[5])
end
return {{acked, lost}}
"""

# Keeps batches this monitor still works on from looking abandoned (XAUTOCLAIM takes batches idle for
# RECLAIM_IDLE_SECONDS): resets their idle time, but only for batches still ours. KEYS[1] checks stream,
# ARGV[1] group, ARGV[2] consumer, ARGV[3..] ids. Returns the ids another consumer holds now.
TOUCH_BATCHES = """
local lost = {}
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if entry and entry[2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# On a busy machine a round trip to Redis took 100-700 ms (bench/side_by_side.py, sustained condition):
# one group of `flush_max` per round trip would then cap the writer below the probes' pace, and results
# would wait in the buffer for seconds. Up to this many groups' worth go in one round trip instead; the
# Lua script stays a few milliseconds of Redis time.
BACKLOG_GROUPS = 8

BITMAP_TTL_S = 86_400  # a bitmap outlives any pending batch (streams are trimmed by age long before)


def result_row(check: Check, result: ProbeResult, started_at: float) -> str:
    """[device_id, ok, latency_ms|null, error|null, checked_at]: checked_at is when the probe STARTED, so
    the evaluator can order a device's results by probe time whatever order they arrive in."""
    latency = "null" if result.latency_ms is None else repr(result.latency_ms)
    error = "null" if result.error is None else json.dumps(result.error)
    return f"[{check.device_id},{1 if result.ok else 0},{latency},{error},{started_at:.3f}]"


class ResultWriter:
    def __init__(self, client: aioredis.Redis, metrics: MonitorMetrics, *, region: str, instance: str,
                 flush_seconds: float = 0.1, flush_max: int = 500, buffer_max: int = 10_000) -> None:
        self._redis = client
        self._metrics = metrics
        self.region, self.instance = region, instance
        self.stream = protocol.checks_stream(region)
        self.bitmap_prefix = protocol.stored_bitmap_prefix(region)
        self._store = client.register_script(STORE_RESULTS)
        self._touch = client.register_script(TOUCH_BATCHES)
        self._flush_seconds = flush_seconds
        self._flush_max = flush_max
        self._buffer_max = buffer_max
        # (check, row or "" for a dropped check, kind, ok, latency) in completion order
        self._buffer: list[tuple[Check, str, str, bool | None, float | None]] = []
        self._finalize: list[Batch] = []  # batches to acknowledge although nothing new is stored for them
        self.shutting_down = False  # set by the consumer at SIGTERM: a Redis that stays away is given up on
        self._gave_up = False
        # Serialises writes and touches: a touch never sees a batch acknowledged by a write whose
        # reply is not processed yet (it would take it for taken over).
        self.lock = asyncio.Lock()
        self._first_at = 0.0  # when the oldest buffered result arrived (monotonic)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.on_room: Callable[[], None] = lambda: None  # the scheduler resumes starting checks
        # (acknowledged ids, ids another monitor holds now): the consumer forgets both
        self.on_settled: Callable[[list[str], list[str]], None] = lambda acked, lost: None

    # ---- filling ------------------------------------------------------------------------------------

    def has_room(self) -> bool:
        """False while the buffer is full (Redis slow or away): the scheduler then starts no new checks."""
        return len(self._buffer) < self._buffer_max

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def add(self, check: Check, result: ProbeResult, started_at: float) -> None:
        if check.batch.lost:
            return
        self._push((check, result_row(check, result, started_at), check.kind, result.ok, result.latency_ms))

    def dropped(self, check: Check) -> None:
        """A check that was not probed (too late to start): marked handled without a result row."""
        if not check.batch.lost:
            self._push((check, "", check.kind, None, None))

    def finalize(self, batch: Batch) -> None:
        """Acknowledge a (reclaimed) batch whose checks are all stored already."""
        self._finalize.append(batch)
        self._signal()

    def _push(self, item: tuple[Check, str, str, bool | None, float | None]) -> None:
        buffer = self._buffer
        buffer.append(item)
        if len(buffer) == 1:
            self._first_at = time.monotonic()
            self._signal()
        elif len(buffer) == self._flush_max:  # the writer waits for the first result or a full group
            self._signal()

    def _signal(self) -> None:
        self._drained.clear()
        self._wake.set()

    # ---- flushing -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Flush groups until `stop` is set and the buffer is empty (the caller finishes its checks first)."""
        while True:
            if not self._buffer and not self._finalize:
                self._drained.set()
                if stop.is_set():
                    return
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                for task in (waiter, stopper):
                    task.cancel()
                continue
            # Gather a group: until flush_seconds after its oldest result, or until flush_max are ready.
            deadline = self._first_at + self._flush_seconds
            while len(self._buffer) < self._flush_max and not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=left)
            await self._flush_group()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    async def _flush_group(self) -> None:
        size = self._flush_max * BACKLOG_GROUPS
        group, self._buffer = self._buffer[:size], self._buffer[size:]
        # Results left over arrived while the last group was written: they have waited long enough.
        self._first_at = time.monotonic() - self._flush_seconds
        finalize, self._finalize = self._finalize, []
        by_batch: dict[str, tuple[Batch, list[tuple[Check, str]]]] = {}
        for batch in finalize:
            by_batch.setdefault(batch.message_id, (batch, []))
        for check, row, *_ in group:
            if not check.batch.lost:
                by_batch.setdefault(check.batch.message_id, (check.batch, []))[1].append((check, row))
        if not by_batch:  # only results of batches taken over meanwhile: nothing to write
            self.on_room()
            return
        args: list[str | int | float] = [
            protocol.CHECKS_GROUP, self.instance, protocol.RESULTS_STREAM_MAXLEN, self.region, self.instance,
            self.bitmap_prefix, BITMAP_TTL_S, len(by_batch),
        ]
        for message_id, (batch, items) in by_batch.items():
            # rows never hold a raw newline: JSON escapes it (errors go through json.dumps)
            args.extend((message_id, batch.size, ",".join([str(check.index) for check, _row in items]),
                         "\n".join([row or "-" for _check, row in items])))
        async with self.lock:
            acked, lost = await self._write(args)
            if acked is not None:
                self._settle(by_batch, group, acked, lost)
        # else: shutting down with Redis away; the batches stay pending and a peer reclaims them, probing
        # again only the checks whose bits are not set. Nothing is lost.

    def _settle(self, by_batch: dict[str, tuple[Batch, list[tuple[Check, str]]]],
                group: list[tuple[Check, str, str, bool | None, float | None]], acked: list[str],
                lost: list[str]) -> None:
        for batch, items in by_batch.values():
            batch.remaining -= len(items)
        lost_set = set(lost)
        for message_id in lost_set:
            by_batch[message_id][0].lost = True
        if lost_set:
            self._metrics.lost_batches.inc(len(lost_set))
            log_fields(logger, logging.WARNING, "batches taken over by another monitor; their results are "
                       "its to write", ids=sorted(lost_set)[:10], count=len(lost_set))
        self._metrics.batches.inc(len(acked))
        self.on_settled(acked, sorted(lost_set))
        self._metrics.record_results(
            [(kind, ok, latency) for check, _row, kind, ok, latency in group
             if ok is not None and check.batch.message_id not in lost_set]
        )
        self.on_room()

    async def _write(self, args: list[str | int | float]) -> tuple[list[str] | None, list[str]]:
        delay = 0.2
        while True:
            try:
                acked, lost = await self._store(keys=[self.stream, protocol.RESULTS_STREAM], args=args)
                return [_as_str(i) for i in acked], [_as_str(i) for i in lost]
            except (RedisError, OSError) as exc:
                self._metrics.write_errors.inc()
                if self.shutting_down and (delay >= 5.0 or self._gave_up):
                    self._gave_up = True
                    log_fields(logger, logging.WARNING, "giving up on writing results at shutdown", error=str(exc))
                    return None, []
                log_fields(logger, logging.WARNING, "writing results failed, retrying", error=str(exc),
                           retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def touch(self, message_ids: list[str]) -> list[str]:
        """Reset the idle time of batches still ours; returns those another monitor holds now. Call it
        holding `lock`, with the ids read under it."""
        lost: list[str] = []
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start : start + 500]
            reply = await self._touch(keys=[self.stream], args=[protocol.CHECKS_GROUP, self.instance, *chunk])
            lost.extend(_as_str(i) for i in reply)
        return lost


def _as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
