"""Invitations and password resets: single-use tokens sent by e-mail, stored only as sha256, expiring.

Using a token marks it used in the same statement that finds it, so a link works once even when it is
opened twice at the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from iot.repo._db import Executor
from iot.tokens import new_token, token_hash

INVITE_PREFIX, RESET_PREFIX = "ioti_", "iotr_"
INVITE_TTL = timedelta(days=7)
RESET_TTL = timedelta(hours=1)

INSERT_INVITATION = """
INSERT INTO invitations (tenant_id, email, role, token_hash, invited_by, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + $6::interval)
"""
SELECT_INVITATION = """
SELECT id, email, role FROM invitations
WHERE tenant_id = $1 AND token_hash = $2 AND accepted_at IS NULL AND expires_at > now()
"""
ACCEPT_INVITATION = """
UPDATE invitations SET accepted_at = now()
WHERE tenant_id = $1 AND token_hash = $2 AND accepted_at IS NULL AND expires_at > now()
RETURNING id, email, role
"""
SELECT_PENDING_INVITATIONS = """
SELECT id, email, role, expires_at FROM invitations
WHERE tenant_id = $1 AND accepted_at IS NULL AND expires_at > now() ORDER BY id DESC LIMIT 200
"""
INSERT_RESET = """
INSERT INTO password_resets (tenant_id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, now() + $4::interval)
"""
SELECT_RESET = """
SELECT user_id FROM password_resets
WHERE tenant_id = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > now()
"""
USE_RESET = """
UPDATE password_resets SET used_at = now()
WHERE tenant_id = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > now()
RETURNING user_id
"""


@dataclass(frozen=True, slots=True)
class Invitation:
    id: int
    email: str
    role: str


async def create_invitation(db: Executor, tenant_id: int, email: str, role: str, invited_by: int | None) -> str:
    token = new_token(INVITE_PREFIX)
    await db.execute(INSERT_INVITATION, tenant_id, email, role, token_hash(token), invited_by, INVITE_TTL)
    return token


async def find_invitation(db: Executor, tenant_id: int, token: str) -> Invitation | None:
    row = await db.fetchrow(SELECT_INVITATION, tenant_id, token_hash(token))
    return Invitation(row["id"], row["email"], row["role"]) if row else None


async def accept_invitation(db: Executor, tenant_id: int, token: str) -> Invitation | None:
    row = await db.fetchrow(ACCEPT_INVITATION, tenant_id, token_hash(token))
    return Invitation(row["id"], row["email"], row["role"]) if row else None


async def pending_invitations(db: Executor, tenant_id: int) -> list:
    return list(await db.fetch(SELECT_PENDING_INVITATIONS, tenant_id))


async def create_reset(db: Executor, tenant_id: int, user_id: int) -> str:
    token = new_token(RESET_PREFIX)
    await db.execute(INSERT_RESET, tenant_id, user_id, token_hash(token), RESET_TTL)
    return token


async def reset_is_valid(db: Executor, tenant_id: int, token: str) -> bool:
    return await db.fetchval(SELECT_RESET, tenant_id, token_hash(token)) is not None


async def use_reset(db: Executor, tenant_id: int, token: str) -> int | None:
    """The user id of a valid reset token, marking it used; None when unknown, used or expired."""
    return await db.fetchval(USE_RESET, tenant_id, token_hash(token))
