"""Metric reads of one tenant's device: chart series per range, latest values (for a device or a page of them).

Every query joins `devices` on the tenant id, so another tenant's device id reads as nothing. Series are
bounded by construction: raw points for the last hour (capped), minute rollups for a day (1,440 at most),
hourly buckets of the rollups for 30 days (720 at most).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from iot.repo._db import Executor, check_ids

Range = Literal["1h", "1d", "30d"]
RANGES: dict[str, tuple[str, int]] = {"1h": ("1 hour", 0), "1d": ("1 day", 60), "30d": ("30 days", 3600)}
MAX_RAW_POINTS = 3600  # the newest points of the hour, when a device sends more than one a second

SELECT_DEVICE = "SELECT id FROM devices WHERE tenant_id = $1 AND id = $2"

SELECT_RAW = """
SELECT ts, value, value AS min, value AS max, 1 AS count FROM (
    SELECT m.ts, m.value FROM device_metrics m JOIN devices d ON d.id = m.device_id
    WHERE d.tenant_id = $1 AND m.device_id = $2 AND m.name = $3 AND m.ts > now() - interval '1 hour'
    ORDER BY m.ts DESC LIMIT $4
) newest ORDER BY ts
"""

SELECT_MINUTES = """
SELECT r.minute AS ts, r.sum / r.count AS value, r.min, r.max, r.count
FROM metric_rollups r JOIN devices d ON d.id = r.device_id
WHERE d.tenant_id = $1 AND r.device_id = $2 AND r.name = $3 AND r.minute > now() - interval '1 day'
ORDER BY r.minute
"""

SELECT_HOURS = """
SELECT date_trunc('hour', r.minute) AS ts, sum(r.sum) / sum(r.count) AS value, min(r.min) AS min,
       max(r.max) AS max, sum(r.count)::bigint AS count
FROM metric_rollups r JOIN devices d ON d.id = r.device_id
WHERE d.tenant_id = $1 AND r.device_id = $2 AND r.name = $3 AND r.minute > now() - interval '30 days'
GROUP BY 1 ORDER BY 1
"""

SERIES_SQL = {"1h": SELECT_RAW, "1d": SELECT_MINUTES, "30d": SELECT_HOURS}

MAX_LATEST = 100  # metric names shown per device

SELECT_LATEST = """
SELECT l.name, l.value, l.ts FROM metric_latest l JOIN devices d ON d.id = l.device_id
WHERE d.tenant_id = $1 AND l.device_id = $2
ORDER BY l.name LIMIT $3
"""

# The device list's metric columns: the chosen names for the devices of one page.
SELECT_LATEST_FOR = """
SELECT l.device_id, l.name, l.value, l.ts FROM metric_latest l JOIN devices d ON d.id = l.device_id
WHERE d.tenant_id = $1 AND l.device_id = ANY($2::bigint[]) AND l.name = ANY($3::text[])
"""


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    ts: datetime
    value: float  # raw value, or the mean of the bucket
    min: float
    max: float
    count: int


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    range: str
    bucket_s: int  # 0: raw points
    points: list[SeriesPoint]
    truncated: bool  # raw points beyond MAX_RAW_POINTS were left out (the oldest of the hour)


@dataclass(frozen=True, slots=True)
class Latest:
    name: str
    value: float
    ts: datetime


async def device_exists(db: Executor, tenant_id: int, device_id: int) -> bool:
    check_ids(device_id=device_id)
    return await db.fetchval(SELECT_DEVICE, tenant_id, device_id) is not None


async def series(db: Executor, tenant_id: int, device_id: int, name: str, range_: Range) -> Series:
    """The chart series of one metric over `range_` (1h raw, 1d per minute, 30d per hour)."""
    check_ids(device_id=device_id)
    sql = SERIES_SQL[range_]
    args: tuple = (tenant_id, device_id, name) + ((MAX_RAW_POINTS,) if range_ == "1h" else ())
    rows = await db.fetch(sql, *args)
    points = [SeriesPoint(r["ts"], _mean(r["value"], r["min"], r["max"]), r["min"], r["max"], r["count"])
              for r in rows]
    return Series(name, range_, RANGES[range_][1], points, range_ == "1h" and len(points) == MAX_RAW_POINTS)


def _mean(value: float, low: float, high: float) -> float:
    """The bucket mean, or the middle of its range when astronomic values made the sum infinite (ingest)."""
    return value if math.isfinite(value) else low / 2 + high / 2


async def latest(db: Executor, tenant_id: int, device_id: int) -> list[Latest]:
    check_ids(device_id=device_id)
    rows = await db.fetch(SELECT_LATEST, tenant_id, device_id, MAX_LATEST)
    return [Latest(r["name"], r["value"], r["ts"]) for r in rows]


async def latest_for(db: Executor, tenant_id: int, device_ids: list[int], names: list[str]
                     ) -> dict[int, dict[str, Latest]]:
    """{device_id: {name: latest}} for the chosen names of a page of devices (missing ones are absent)."""
    if not device_ids or not names:
        return {}
    out: dict[int, dict[str, Latest]] = {}
    for r in await db.fetch(SELECT_LATEST_FOR, tenant_id, device_ids, names):
        out.setdefault(r["device_id"], {})[r["name"]] = Latest(r["name"], r["value"], r["ts"])
    return out
