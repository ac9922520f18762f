"""Dashboard users of a tenant: email + argon2id password, a role, an optional TOTP second factor.

Emails are compared lower-cased. Passwords are hashed with argon2-cffi's defaults (argon2id); a wrong
password and an unknown email cost the same hash, so timing does not tell which emails exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from iot.errors import Conflict, InputError
from iot.mailer import address_problem
from iot.repo._db import Executor, check_ids

ROLES = ("owner", "admin", "member", "viewer")
RANK = {role: rank for rank, role in enumerate(reversed(ROLES))}  # viewer 0 ... owner 3
MIN_PASSWORD, MAX_PASSWORD = 10, 200
MAX_EMAIL = 254

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both paths take the same time.
_DUMMY_HASH = _hasher.hash("not a password of anybody")

_COLUMNS = ("id, tenant_id, email, password_hash, role, totp_sealed, totp_enabled, created_at, last_signin_at, "
            "session_epoch")

INSERT_USER = f"""
INSERT INTO users (tenant_id, email, password_hash, role) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, email) DO NOTHING RETURNING {_COLUMNS}
"""
# The owner is created only while the tenant has no user: two first sign-ins racing make one owner.
INSERT_FIRST_OWNER = f"""
INSERT INTO users (tenant_id, email, password_hash, role)
SELECT $1, $2, $3, 'owner' WHERE NOT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1)
ON CONFLICT (tenant_id, email) DO NOTHING RETURNING {_COLUMNS}
"""
SELECT_BY_EMAIL = f"SELECT {_COLUMNS} FROM users WHERE tenant_id = $1 AND email = $2"
SELECT_BY_ID = f"SELECT {_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"
SELECT_USERS = f"SELECT {_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY id"
HAS_USERS = "SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1)"
TOUCH_SIGNIN = "UPDATE users SET last_signin_at = now() WHERE tenant_id = $1 AND id = $2"
UPDATE_PASSWORD = """
UPDATE users SET password_hash = $3, session_epoch = session_epoch + 1 WHERE tenant_id = $1 AND id = $2
RETURNING session_epoch
"""
UPDATE_ROLE = f"UPDATE users SET role = $3 WHERE tenant_id = $1 AND id = $2 AND role <> 'owner' RETURNING {_COLUMNS}"
DELETE_USER = "DELETE FROM users WHERE tenant_id = $1 AND id = $2 AND role <> 'owner' RETURNING id"
# A new seed starts with no used step (its codes have nothing to do with the old seed's).
UPDATE_TOTP = """
UPDATE users SET totp_sealed = $3, totp_enabled = $4,
       totp_last_step = CASE WHEN totp_sealed IS DISTINCT FROM $3 THEN NULL ELSE totp_last_step END
WHERE tenant_id = $1 AND id = $2
"""
# One statement, so two requests racing with the same code cannot both claim its step.
CLAIM_TOTP_STEP = """
UPDATE users SET totp_last_step = $3
WHERE tenant_id = $1 AND id = $2 AND (totp_last_step IS NULL OR totp_last_step < $3) RETURNING id
"""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    tenant_id: int
    email: str
    password_hash: str
    role: str
    totp_sealed: str | None
    totp_enabled: bool
    created_at: datetime
    last_signin_at: datetime | None
    session_epoch: int  # a session opened under an older epoch has ended (password changed or reset)

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> User:
        return cls(*(row[c] for c in _COLUMNS.split(", ")))

    def at_least(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


def normal_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > MAX_EMAIL:
        raise InputError("email", f"at most {MAX_EMAIL} characters")
    problem = address_problem(email)
    if problem:
        raise InputError("email", problem)
    return email


def hash_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InputError("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters; a long passphrase is best")
    return _hasher.hash(password)


def password_matches(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _DUMMY_HASH, password[:MAX_PASSWORD]) and user is not None
    except (VerificationError, InvalidHashError):
        return False


def role_problem(role: str, *, allow_owner: bool = False) -> str | None:
    allowed = ROLES if allow_owner else ROLES[1:]
    return None if role in allowed else f"must be one of {', '.join(allowed)}"


async def has_users(db: Executor, tenant_id: int) -> bool:
    return bool(await db.fetchval(HAS_USERS, tenant_id))


async def create_first_owner(db: Executor, tenant_id: int, email: str, password: str) -> User | None:
    """The tenant's owner, if it has no user yet; None if someone else was first."""
    row = await db.fetchrow(INSERT_FIRST_OWNER, tenant_id, normal_email(email), hash_password(password))
    return User.from_record(row) if row else None


async def create_user(db: Executor, tenant_id: int, email: str, password: str, role: str) -> User:
    problem = role_problem(role)
    if problem:
        raise InputError("role", problem)
    email = normal_email(email)
    row = await db.fetchrow(INSERT_USER, tenant_id, email, hash_password(password), role)
    if row is None:
        raise Conflict("email", f"{email} already has an account here; sign in, or reset the password")
    return User.from_record(row)


async def user_by_email(db: Executor, tenant_id: int, email: str) -> User | None:
    row = await db.fetchrow(SELECT_BY_EMAIL, tenant_id, email.strip().lower()[:MAX_EMAIL])
    return User.from_record(row) if row else None


async def user_by_id(db: Executor, tenant_id: int, user_id: int) -> User | None:
    check_ids(user_id=user_id)
    row = await db.fetchrow(SELECT_BY_ID, tenant_id, user_id)
    return User.from_record(row) if row else None


async def list_users(db: Executor, tenant_id: int) -> list[User]:
    return [User.from_record(r) for r in await db.fetch(SELECT_USERS, tenant_id)]


async def touch_signin(db: Executor, tenant_id: int, user_id: int) -> None:
    await db.execute(TOUCH_SIGNIN, tenant_id, user_id)


async def set_password(db: Executor, tenant_id: int, user_id: int, password: str) -> None:
    """A new password; every session of the user opened before it ends."""
    await db.fetchval(UPDATE_PASSWORD, tenant_id, user_id, hash_password(password))


async def set_role(db: Executor, tenant_id: int, user_id: int, role: str) -> User | None:
    """Change a user's role (never the owner's, never to owner); None when there is no such user."""
    problem = role_problem(role)
    if problem:
        raise InputError("role", problem)
    row = await db.fetchrow(UPDATE_ROLE, tenant_id, user_id, role)
    return User.from_record(row) if row else None


async def delete_user(db: Executor, tenant_id: int, user_id: int) -> bool:
    return await db.fetchval(DELETE_USER, tenant_id, user_id) is not None


async def set_totp(db: Executor, tenant_id: int, user_id: int, sealed_seed: str | None, enabled: bool) -> None:
    await db.execute(UPDATE_TOTP, tenant_id, user_id, sealed_seed, enabled)


async def claim_totp_step(db: Executor, tenant_id: int, user_id: int, step: int) -> bool:
    """Record `step` as the user's last used TOTP step; False when that step or a later one was used already."""
    return await db.fetchval(CLAIM_TOTP_STEP, tenant_id, user_id, step) is not None
