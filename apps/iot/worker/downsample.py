"""Minute rollups -> hourly rollups (migration 0011), so history outlives the minute partitions.

Each hour is recomputed whole from its minute rows (an upsert, never an increment), so a rerun or two
leaders overlapping write the same rows. Percentiles are exact: they are taken over the minute rows' raw
latencies, never averaged from the minute percentiles. Work happens once per completed hour: the job
keeps how far it got in `history_watermarks`, and each time a new hour is complete it also redoes the
LOOKBACK before it, which picks up late results the evaluator recorded after an hour was first downsampled.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

LOOKBACK = timedelta(hours=1)
CHUNK = timedelta(hours=6)  # hours per statement: bounded work and transaction size at 10,000 devices

# One pass over the minute rows of [$1, $2); WITH ORDINALITY lets each row's checks count once although its
# latencies are unnested into many rows.
DOWNSAMPLE = """
INSERT INTO rollups_hourly (device_id, region, hour, checks, failures, latency_p50, latency_p95, latency_max)
SELECT r.device_id, r.region, date_trunc('hour', r.minute, 'UTC'),
       sum(r.checks) FILTER (WHERE x.n IS NULL OR x.n = 1), sum(r.failures) FILTER (WHERE x.n IS NULL OR x.n = 1),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY x.v), percentile_cont(0.95) WITHIN GROUP (ORDER BY x.v),
       max(r.latency_max)
FROM rollups r
LEFT JOIN LATERAL unnest(r.latencies) WITH ORDINALITY AS x(v, n) ON true
WHERE r.minute >= $1 AND r.minute < $2
GROUP BY 1, 2, 3
ON CONFLICT (device_id, region, hour) DO UPDATE SET
    checks = EXCLUDED.checks, failures = EXCLUDED.failures, latency_p50 = EXCLUDED.latency_p50,
    latency_p95 = EXCLUDED.latency_p95, latency_max = EXCLUDED.latency_max
"""
SELECT_WATERMARK = "SELECT done_until FROM history_watermarks WHERE job = 'downsample'"
UPSERT_WATERMARK = """
INSERT INTO history_watermarks (job, done_until) VALUES ('downsample', $1)
ON CONFLICT (job) DO UPDATE SET done_until = EXCLUDED.done_until
"""


def hour_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def downsample_hour_range(conn: asyncpg.Connection, start: datetime, end: datetime) -> None:
    """Recompute the hourly rows of [start, end) from the minute rollups (whole hours)."""
    await conn.execute(DOWNSAMPLE, start, end)


async def downsample(conn: asyncpg.Connection, now: datetime, minute_retention_days: int) -> tuple[datetime, datetime] | None:
    """Downsample the hours completed since the last run (and the LOOKBACK before); returns the range done,
    None when no new hour is complete. The first run starts at the oldest minute rollups retention keeps."""
    end = hour_start(now)
    oldest = end - timedelta(days=minute_retention_days)
    mark = await conn.fetchval(SELECT_WATERMARK)
    if mark is not None and mark >= end:
        return None
    start = max(oldest, mark - LOOKBACK) if mark is not None else oldest
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(end, chunk_start + CHUNK)
        async with conn.transaction():  # each chunk and the watermark move together
            await downsample_hour_range(conn, chunk_start, chunk_end)
            await conn.execute(UPSERT_WATERMARK, chunk_end)
        chunk_start = chunk_end
    return start, end
