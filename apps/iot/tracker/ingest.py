"""Group-commit writer for device metrics and heartbeats.

Requests hand their points to one background task and wait for the commit, so the client's 200 means
"stored". While one batch is being written, the next requests queue up and go out together in a single
COPY, so throughput grows with load instead of costing one transaction per request. Last-seen times go
to Postgres (`devices.last_seen_at`, which the worker's silence watch reads) in the same transaction.

A batch mixes tenants, so one bad submission must not fail the others: when Postgres refuses a value
(the API validates first; this is the last line), the batch is split in halves and each half retried,
down to the one submission that carries it, which alone gets an InputError (422). A database outage
still fails every waiter with IngestUnavailable (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from iot.errors import REFUSED_BY_DATABASE, InputError, refused_by_database
from iot.log import log_fields

logger = logging.getLogger(__name__)

METRIC_COLUMNS = ("device_id", "ts", "name", "value")
UPDATE_LAST_SEEN = """
UPDATE devices d SET last_seen_at = greatest(d.last_seen_at, v.seen)
FROM unnest($1::bigint[], $2::timestamptz[]) AS v(id, seen)
WHERE d.id = v.id
"""
SELECT_EXISTING_IDS = "SELECT id FROM devices WHERE id = ANY($1::bigint[])"
# Per-minute rollups for charts and anomaly baselines (migration 0012), merged into rows earlier batches wrote.
# Rows go in key order, so two flushers upserting the same minutes lock them in the same order (no deadlock).
UPSERT_METRIC_ROLLUPS = """
INSERT INTO metric_rollups (device_id, name, minute, count, sum, sum_sq, min, max, last, last_ts)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[], $5::float8[], $6::float8[],
                     $7::float8[], $8::float8[], $9::float8[], $10::timestamptz[])
ON CONFLICT (device_id, name, minute) DO UPDATE SET
    count = metric_rollups.count + EXCLUDED.count,
    sum = metric_rollups.sum + EXCLUDED.sum,
    sum_sq = metric_rollups.sum_sq + EXCLUDED.sum_sq,
    min = least(metric_rollups.min, EXCLUDED.min),
    max = greatest(metric_rollups.max, EXCLUDED.max),
    last = CASE WHEN EXCLUDED.last_ts >= metric_rollups.last_ts THEN EXCLUDED.last ELSE metric_rollups.last END,
    last_ts = greatest(metric_rollups.last_ts, EXCLUDED.last_ts)
"""
MAX_ROLLUP_SUM = 1e300
UPSERT_METRIC_LATEST = """
INSERT INTO metric_latest (device_id, name, value, ts)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::timestamptz[])
ON CONFLICT (device_id, name) DO UPDATE SET value = EXCLUDED.value, ts = EXCLUDED.ts
WHERE EXCLUDED.ts >= metric_latest.ts
"""

Point = tuple[datetime, str, float]


@dataclass
class _Submission:
    device_id: int
    points: list[Point]
    seen_at: datetime
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class IngestUnavailable(RuntimeError):
    """The database could not take the batch; the client should retry later (503)."""


class MetricWriter:
    def __init__(self, pool: asyncpg.Pool, *, max_batch_points: int = 50_000, flushers: int = 2) -> None:
        self._pool = pool
        self._max_batch_points = max_batch_points
        self._queue: deque[_Submission] = deque()
        self._wake = asyncio.Event()
        self._flushers = flushers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        # Two flushers: one encodes and sends the next COPY while Postgres commits the previous one.
        self._tasks = [asyncio.create_task(self._run(), name=f"metric-writer-{i}") for i in range(self._flushers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in self._queue:
            if not sub.done.done():
                sub.done.set_exception(IngestUnavailable("tracker is shutting down; retry"))

    async def write(self, device_id: int, points: list[Point], seen_at: datetime) -> int:
        """Store `points` for the device and mark it seen; returns the number of points stored."""
        sub = _Submission(device_id, points, seen_at)
        self._queue.append(sub)
        self._wake.set()
        return await sub.done

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, size = [], 0
            while self._queue and (not batch or size + len(self._queue[0].points) <= self._max_batch_points):
                sub = self._queue.popleft()
                batch.append(sub)
                size += len(sub.points)
            try:
                await self._flush(batch)
            except asyncio.CancelledError:
                self._fail(batch, RuntimeError("stopped while writing"))  # release the waiters
                raise

    async def _flush(self, batch: list[_Submission]) -> None:
        try:
            await self._store_isolating(batch)
        except Exception as exc:  # noqa: BLE001 - every waiter not answered yet must be released
            self._fail(batch, exc)

    async def _store_isolating(self, batch: list[_Submission]) -> None:
        """Store the batch in one transaction if possible, answering each waiter as its points commit.

        Submissions whose device was deleted meanwhile are answered 0 and dropped; one holding a value
        Postgres refuses is rejected alone (the batch is halved until it is found)."""
        if not batch:
            return
        try:
            await self._store(batch)
        except asyncpg.ForeignKeyViolationError:
            # A device was deleted while its points were queued: drop those, keep the rest.
            kept = await self._without_deleted(batch)
            if len(kept) == len(batch):
                raise
            await self._store_isolating(kept)
            return
        except REFUSED_BY_DATABASE as exc:
            if len(batch) == 1:
                self._reject(batch[0], exc)
                return
            half = len(batch) // 2
            await self._store_isolating(batch[:half])
            await self._store_isolating(batch[half:])
            return
        for sub in batch:
            if not sub.done.done():
                sub.done.set_result(len(sub.points))

    def _reject(self, sub: _Submission, exc: asyncpg.PostgresError) -> None:
        refused = refused_by_database(exc)
        log_fields(logger, logging.WARNING, "metric submission refused by the database", device_id=sub.device_id,
                   error=refused.reason)
        if not sub.done.done():
            sub.done.set_exception(InputError("points", refused.reason))

    async def _store(self, batch: list[_Submission]) -> None:
        records = [(sub.device_id, ts, name, value) for sub in batch for ts, name, value in sub.points]
        last_seen: dict[int, datetime] = {}
        for sub in batch:
            last_seen[sub.device_id] = max(last_seen.get(sub.device_id, sub.seen_at), sub.seen_at)
        async with self._pool.acquire() as conn, conn.transaction():
            if records:
                await conn.copy_records_to_table("device_metrics", records=records, columns=METRIC_COLUMNS)
                rollups = rollup_columns(records)
                await conn.execute(UPSERT_METRIC_ROLLUPS, *rollups)
                await conn.execute(UPSERT_METRIC_LATEST, *latest_columns(rollups))
            await conn.execute(UPDATE_LAST_SEEN, list(last_seen), list(last_seen.values()))

    async def _without_deleted(self, batch: list[_Submission]) -> list[_Submission]:
        ids = list({sub.device_id for sub in batch})
        async with self._pool.acquire() as conn:
            existing = {r["id"] for r in await conn.fetch(SELECT_EXISTING_IDS, ids)}
        kept = []
        for sub in batch:
            if sub.device_id in existing:
                kept.append(sub)
            elif not sub.done.done():
                sub.done.set_result(0)
        return kept

    def _fail(self, batch: list[_Submission], exc: Exception) -> None:
        log_fields(logger, logging.ERROR, "metric batch not stored", error=f"{type(exc).__name__}: {exc}",
                   submissions=len(batch))
        for sub in batch:
            if not sub.done.done():
                sub.done.set_exception(IngestUnavailable("database unavailable; retry later"))


def rollup_columns(records: list[tuple[int, datetime, str, float]]) -> list[list]:
    """(device_id, ts, name, value) rows -> the columns of UPSERT_METRIC_ROLLUPS, one row per device, name, minute."""
    groups: dict[tuple[int, str, datetime], list] = {}
    for device_id, ts, name, value in records:
        key = (device_id, name, ts.replace(second=0, microsecond=0))
        g = groups.get(key)
        if g is None:
            groups[key] = [1, value, value * value, value, value, value, ts]
            continue
        g[0] += 1
        g[1] += value
        g[2] += value * value
        g[3] = min(g[3], value)
        g[4] = max(g[4], value)
        if ts >= g[6]:
            g[5], g[6] = value, ts
    for g in groups.values():
        # Sums past 1e300 are stored as infinite: Postgres then never overflows adding the next batch (it refuses
        # finite + finite = inf), and readers treat such minutes as unusable for means and baselines.
        for i in (1, 2):
            if abs(g[i]) > MAX_ROLLUP_SUM:
                g[i] = math.copysign(math.inf, g[i])
    keys = sorted(groups)
    columns: list[list] = [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]]
    columns += [[groups[k][i] for k in keys] for i in range(7)]
    return columns


def latest_columns(rollups: list[list]) -> list[list]:
    """The newest point per device and name, from the (key-ordered) rollup columns: UPSERT_METRIC_LATEST's."""
    newest: dict[tuple[int, str], tuple[float, datetime]] = {}
    for device_id, name, last, last_ts in zip(rollups[0], rollups[1], rollups[8], rollups[9], strict=True):
        seen = newest.get((device_id, name))
        if seen is None or last_ts >= seen[1]:
            newest[(device_id, name)] = (last, last_ts)
    keys = sorted(newest)
    return [[k[0] for k in keys], [k[1] for k in keys], [newest[k][0] for k in keys], [newest[k][1] for k in keys]]
