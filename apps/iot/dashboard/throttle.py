"""Sign-in throttling in Redis: after a few failures per (tenant, email) or per (tenant, address), wait.

Counters live for the window; a success clears the email's counter. Attempts are counted before the
password is checked, so parallel guesses cannot race past the limit.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

WINDOW_SECONDS = 15 * 60
MAX_PER_EMAIL = 5
MAX_PER_ADDRESS = 20
KEY = "dashboard:signin:{}:{}"


def _key(tenant_id: int, kind: str, value: str) -> str:
    return KEY.format(tenant_id, hashlib.sha256(f"{kind}:{value}".encode()).hexdigest())


class SignInThrottle:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def attempt(self, tenant_id: int, email: str, address: str) -> int:
        """Count one attempt; 0 when it may go ahead, else the seconds to wait."""
        waits = []
        for kind, value, limit in (("email", email, MAX_PER_EMAIL), ("ip", address, MAX_PER_ADDRESS)):
            key = _key(tenant_id, kind, value)
            count = await self._redis.incr(key)
            if count == 1:
                await self._redis.expire(key, WINDOW_SECONDS)
            if count > limit:
                waits.append(max(int(await self._redis.ttl(key)), 1))
        return max(waits, default=0)

    async def succeeded(self, tenant_id: int, email: str) -> None:
        await self._redis.delete(_key(tenant_id, "email", email))
