"""Leader lock with expiry and fencing (one active scheduler across all worker processes).

- acquire: SET key token NX PX ttl. The token embeds a fencing number from INCR, so every leadership
  term has a distinct, increasing token.
- renew: a Lua compare-and-extend (PEXPIRE only while the value is still our token).
- release: a Lua compare-and-delete, so a leader that lost the lock can never delete its successor's.
- fencing: dispatch runs its XADDs inside a Lua script that first checks the lock still holds our
  token (see worker.dispatch), so a paused ex-leader cannot enqueue checks after losing the lock.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from iot import protocol

RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, client: aioredis.Redis, instance: str, ttl_seconds: float,
                 key: str = protocol.WORKER_LOCK_KEY) -> None:
        self._redis = client
        self.instance = instance
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token: str | None = None
        self.fence: int | None = None
        # Monotonic deadline until which we may act as leader without another renewal. Kept shorter than
        # the Redis expiry so we stop before a standby can start (clock drift, slow renew replies).
        self._valid_until = 0.0
        self._renew = client.register_script(RENEW_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    @property
    def held(self) -> bool:
        return self.token is not None and time.monotonic() < self._valid_until

    async def acquire(self) -> bool:
        """Try once to become leader; True when this process now holds the lock."""
        started = time.monotonic()
        existing = await self._redis.get(self.key)
        if existing is not None:
            return False
        fence = int(await self._redis.incr(protocol.WORKER_FENCE_KEY))
        token = f"{fence}:{self.instance}"
        if not await self._redis.set(self.key, token, nx=True, px=self.ttl_ms):
            return False
        self.token, self.fence = token, fence
        self._valid_until = started + self.ttl_ms / 1000.0 * 0.8
        return True

    async def renew(self) -> bool:
        """Extend the lock if still ours; False (and leadership dropped) when it was lost."""
        if self.token is None:
            return False
        started = time.monotonic()
        if await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]) == 1:
            self._valid_until = started + self.ttl_ms / 1000.0 * 0.8
            return True
        self.token = self.fence = None
        self._valid_until = 0.0
        return False

    async def release(self) -> None:
        if self.token is not None:
            await self._release(keys=[self.key], args=[self.token])
        self.token = self.fence = None
        self._valid_until = 0.0
