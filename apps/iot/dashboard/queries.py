"""Reads only the dashboard needs (the repositories in `iot.repo` hold everything shared).

- the tenant's current API key hash, to end sessions opened with a rotated key;
- monitor regions (`repo.regions`) with the number of their monitors that heartbeat now (Redis);
- latency rollups of one device, per region, in chart buckets. Rollups carry no tenant id, so callers
  must first load the device through `repo.devices.get_device(tenant_id, ...)`, which proves ownership.

The device list page calls `repo.device_list.list_devices` (shared with the tracker API) directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from iot.dashboard.charts import Bucket
from iot.repo import history, regions
from iot.repo._db import Executor

# NULL once the original key is revoked (in api_keys): the sessions opened with it end then.
SELECT_API_KEY_HASH = """
SELECT t.api_key_hash FROM tenants t
JOIN api_keys k ON k.tenant_id = t.id AND k.key_hash = t.api_key_hash AND k.revoked_at IS NULL
WHERE t.id = $1
"""

# Buckets of `$3` width over [$2, now]: checks and failures summed, the median weighted by checks.
SELECT_ROLLUP_BUCKETS = """
SELECT region,
       date_bin($3::interval, minute, timestamptz '2000-01-01') AS bucket,
       sum(checks)::int AS checks,
       sum(failures)::int AS failures,
       sum(latency_p50 * checks) FILTER (WHERE latency_p50 IS NOT NULL)
         / nullif(sum(checks) FILTER (WHERE latency_p50 IS NOT NULL), 0) AS latency_ms
FROM rollups
WHERE device_id = $1 AND minute >= $2
GROUP BY region, bucket
ORDER BY region, bucket
"""


@dataclass(frozen=True, slots=True)
class RegionHealth:
    name: str
    healthy: bool
    reason: str | None
    last_heartbeat_at: datetime | None
    live_monitors: int  # monitor processes of this region that heartbeated recently


async def region_health(db: Executor, redis: Redis, alive_seconds: float = 15.0) -> list[RegionHealth]:
    beats = await regions.monitor_heartbeats(redis)
    now = time.time()
    live = {region: sum(1 for t in times if t >= now - alive_seconds) for region, times in beats.items()}
    out = [
        RegionHealth(r.name, r.healthy, r.reason, r.last_heartbeat_at, live.pop(r.name, 0))
        for r in await regions.list_regions(db, redis)
    ]
    # Monitors that heartbeat but the worker has not recorded yet still deserve a line.
    out += [RegionHealth(name, True, "not yet seen by the worker", datetime.fromtimestamp(beats[name][0], UTC), n)
                for name, n in sorted(live.items()) if n]
    return out


async def api_key_hash(db: Executor, tenant_id: int) -> str | None:
    """The tenant's current API key hash (sessions opened with an older key are over)."""
    return await db.fetchval(SELECT_API_KEY_HASH, tenant_id)


async def region_names(db: Executor) -> list[str]:
    return await regions.region_names(db)


async def latency_buckets(db: Executor, device_id: int, since: datetime, bucket: timedelta) -> list[Bucket]:
    rows = await db.fetch(SELECT_ROLLUP_BUCKETS, device_id, since, bucket)
    return [
        Bucket(r["region"], r["bucket"], r["checks"], r["failures"],
               float(r["latency_ms"]) if r["latency_ms"] is not None else None)
        for r in rows
    ]


async def history_buckets(db: Executor, tenant_id: int, device_id: int, range_name: str) -> list[Bucket]:
    """Chart buckets of the 7d/30d/90d ranges (hourly rollups, `repo.history`; the tenant is checked there)."""
    found = await history.latency_series(db, tenant_id, device_id, range_name)
    if found is None:
        return []
    return [Bucket(p.region, p.start, p.checks, p.failures, p.latency_p50) for p in found[2]]
