"""Signed session cookies, bound to one tenant's host.

The cookie carries a random session id, the tenant id, its slug, a per-session CSRF token and a
fingerprint of the API key it was opened with, signed with SESSION_SECRET (itsdangerous). The session id
is also recorded server-side (`session_store.py`), so signing out ends the session even for a copy of
the cookie. Rotating the key changes the
fingerprint, which ends every session opened with the old key. It is host-only (no Domain attribute), so browsers never send acme's cookie to
beta.<domain>; and because a cookie can still be replayed by hand, every request checks that the slug
inside matches the tenant named by the Host header.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "iot_session"
MAX_AGE_SECONDS = 7 * 24 * 3600
_SALT = "iot.dashboard.session.v2"  # v2 added the session id: v1 cookies sign in again


@dataclass(frozen=True, slots=True)
class Session:
    sid: str  # random; the server-side record of the session is keyed on it
    tenant_id: int
    slug: str
    csrf: str
    key_fingerprint: str  # prefix of the sha256 of the API key used to sign in (a user's: `user_epoch`)
    user_id: int | None = None  # None: opened with the API key, before the tenant had an owner


def key_fingerprint(api_key_hash: str) -> str:
    return api_key_hash[:16]


def user_epoch(epoch: int) -> str:
    """What a user's session carries in place of the key fingerprint: the user's session epoch."""
    return f"user:{epoch}"


class SessionCodec:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)

    def new(self, tenant_id: int, slug: str, api_key_hash: str) -> tuple[Session, str]:
        """A fresh session opened with the tenant's API key, and its cookie value."""
        session = Session(secrets.token_urlsafe(24), tenant_id, slug, secrets.token_urlsafe(24),
                          key_fingerprint(api_key_hash))
        return session, self.encode(session)

    def for_user(self, tenant_id: int, slug: str, user_id: int, epoch: int) -> tuple[Session, str]:
        """A fresh session of a signed-in user, and its cookie value; it ends when the user's epoch moves on."""
        session = Session(secrets.token_urlsafe(24), tenant_id, slug, secrets.token_urlsafe(24), user_epoch(epoch),
                          user_id)
        return session, self.encode(session)

    def encode(self, session: Session) -> str:
        return self._serializer.dumps({"sid": session.sid, "tid": session.tenant_id, "slug": session.slug,
                                       "csrf": session.csrf, "kf": session.key_fingerprint, "uid": session.user_id})

    def decode(self, value: str | None) -> Session | None:
        """The session in a cookie value, or None when missing, tampered with, expired or malformed."""
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=MAX_AGE_SECONDS)
        except BadSignature:  # also covers SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        sid, tid, slug, csrf, kf, uid = (data.get(k) for k in ("sid", "tid", "slug", "csrf", "kf", "uid"))
        if not isinstance(tid, int) or not all(isinstance(v, str) for v in (sid, slug, csrf, kf)):
            return None
        if uid is not None and (not isinstance(uid, int) or isinstance(uid, bool)):
            return None
        return Session(sid, tid, slug, csrf, kf, uid)


def csrf_matches(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted)
