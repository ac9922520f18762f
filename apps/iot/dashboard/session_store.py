"""Server-side record of open dashboard sessions: signing out ends a session, copies of its cookie too.

A signed cookie alone stays valid until it expires (7 days), so a copied cookie would outlive the
sign-out. Each session has a random id; Redis keeps `dashboard:session:<sha256 of the id>` for as long as
the cookie may live, sign-out deletes it, and every request checks it (one EXISTS). Key rotation still
ends all of a tenant's sessions through the key fingerprint in the cookie.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from iot.dashboard.session import MAX_AGE_SECONDS, Session

KEY = "dashboard:session:{}"


def _key(session: Session) -> str:
    return KEY.format(hashlib.sha256(session.sid.encode()).hexdigest())


class SessionStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def open(self, session: Session) -> None:
        await self._redis.set(_key(session), session.tenant_id, ex=MAX_AGE_SECONDS)

    async def is_open(self, session: Session) -> bool:
        return bool(await self._redis.exists(_key(session)))

    async def close(self, session: Session) -> None:
        await self._redis.delete(_key(session))
