"""Monitor regions: health as the worker recorded it, with the newest heartbeat of each from Redis."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from iot.protocol import MONITOR_HEARTBEATS_KEY, region_of_member
from iot.repo._db import Executor


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    healthy: bool
    reason: str | None
    last_heartbeat_at: datetime | None


SELECT_REGIONS = "SELECT name, healthy, reason, last_heartbeat_at FROM regions ORDER BY name"


async def region_names(db: Executor) -> list[str]:
    return [r["name"] for r in await db.fetch(SELECT_REGIONS)]


async def monitor_heartbeats(redis: Redis) -> dict[str, list[float]]:
    """region -> the last heartbeat (unix time) of each of its monitor processes, newest first.

    Every monitor process is one member of a sorted set (the worker drops members idle for an hour),
    so this reads a few dozen entries however many devices there are.
    """
    beats: dict[str, list[float]] = {}
    for member, score in await redis.zrange(MONITOR_HEARTBEATS_KEY, 0, -1, withscores=True):
        name = member.decode() if isinstance(member, bytes) else member
        beats.setdefault(region_of_member(name), []).append(float(score))
    return {region: sorted(times, reverse=True) for region, times in beats.items()}


async def list_regions(db: Executor, redis: Redis) -> list[Region]:
    """Monitor regions as the worker sees them (unhealthy regions are left out of every quorum), each
    with its newest monitor heartbeat.

    The worker writes a region's row only when its health changes; heartbeats arrive every few seconds
    from every monitor and live in Redis, so the newest is read from there (no database write per
    heartbeat). Without Redis the row's value stands: the heartbeat the worker saw at the last change.
    """
    rows = [Region(**dict(r)) for r in await db.fetch(SELECT_REGIONS)]
    try:
        beats = await monitor_heartbeats(redis)
    except (RedisError, OSError):
        return rows
    out = []
    for row in rows:
        newest = beats.get(row.name, [None])[0]
        if newest is not None:
            beat = datetime.fromtimestamp(newest, UTC)
            if row.last_heartbeat_at is None or beat > row.last_heartbeat_at:
                row = replace(row, last_heartbeat_at=beat)
        out.append(row)
    return out
