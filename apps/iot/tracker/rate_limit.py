"""Per-tenant metric point budget (`QUOTA_POINTS_PER_SECOND`), shared by every tracker instance via Redis.

A token bucket per tenant in a Redis hash, refilled at the tenant's rate up to `BURST_SECONDS` of it, and
taken from by one Lua script per request; the clock is Redis's TIME, so every instance agrees. A request
that needs more than the bucket holds is refused with the seconds until it would fit (`Retry-After`); one
that needs more than a full bucket can never pass and is told to send smaller batches. When Redis is
down, ingest goes on unmetered: the points still reach Postgres, and that is what devices care about.
"""

from __future__ import annotations

import logging
import math

from redis.asyncio import Redis
from redis.exceptions import RedisError

from iot.errors import QuotaExceeded
from iot.log import log_fields
from iot.quotas import COUNT_RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)

BURST_SECONDS = 2.0
KEY = "quota:points:{tenant_id}"

# KEYS[1] bucket; ARGV: rate (points/s), burst (points), n (points wanted).
# Returns {1, "0"} when taken, {0, "<seconds until n would fit>"} when not.
TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local ok = n <= tokens
if ok then tokens = tokens - n end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
if ok then return {1, '0'} end
return {0, tostring((n - tokens) / rate)}
"""


class PointBudget:
    def __init__(self, redis: Redis) -> None:
        self._take = redis.register_script(TAKE)

    async def take(self, tenant_id: int, points: int, rate: float) -> None:
        """Spend `points` of the tenant's budget, or raise QuotaExceeded (field `points`)."""
        burst = rate * BURST_SECONDS
        if points > burst:
            raise QuotaExceeded(
                "points", f"this request has {points} points, more than this tenant's quota allows at once "
                          f"({burst:g}: {BURST_SECONDS:g} s of {rate:g} points per second); send smaller batches "
                          "more often",
                COUNT_RETRY_AFTER_SECONDS)
        try:
            taken, wait = await self._take(keys=[KEY.format(tenant_id=tenant_id)], args=[rate, burst, points])
        except RedisError as exc:
            log_fields(logger, logging.WARNING, "point budget unavailable; ingest unmetered", error=str(exc))
            return
        if not int(taken):
            seconds = math.ceil(float(wait))
            raise QuotaExceeded(
                "points", f"this tenant may send {rate:g} points per second (bursts up to {burst:g}); "
                          f"retry in {seconds} s or send less often",
                seconds)
