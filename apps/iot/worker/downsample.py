"""Minute rollups -> hourly rollups (migration 0011), so history outlives the minute partitions.

Each hour is recomputed whole from its minute rows (an upsert, never an increment), so a rerun or two
leaders overlapping write the same rows. Percentiles are exact: they are taken over the minute rows' raw
latencies, never averaged from the minute percentiles. The newest complete hours are redone on every run
(LOOKBACK), which picks up late results the evaluator recorded after an hour was first downsampled.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

LOOKBACK = timedelta(hours=2)
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
SELECT_WATERMARK = "SELECT max(hour) FROM rollups_hourly WHERE hour >= $1"


def hour_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def downsample_hour_range(conn: asyncpg.Connection, start: datetime, end: datetime) -> None:
    """Recompute the hourly rows of [start, end) from the minute rollups (whole hours)."""
    await conn.execute(DOWNSAMPLE, start, end)


async def downsample(conn: asyncpg.Connection, now: datetime, minute_retention_days: int) -> tuple[datetime, datetime] | None:
    """Downsample every complete hour since the last one done (minus LOOKBACK); returns the range done.

    Without hourly rows yet, it starts at the oldest minute rollups retention keeps."""
    end = hour_start(now)
    oldest = end - timedelta(days=minute_retention_days)
    mark = await conn.fetchval(SELECT_WATERMARK, oldest)
    start = max(oldest, mark - LOOKBACK) if mark is not None else oldest
    if start >= end:
        return None
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(end, chunk_start + CHUNK)
        await downsample_hour_range(conn, chunk_start, chunk_end)
        chunk_start = chunk_end
    return start, end
