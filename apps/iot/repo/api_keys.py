"""API keys: many per tenant, named, scoped (read / write / ingest), revocable; only their sha256 is stored.

The key itself is returned once, by `create_api_key` / `rotate_key`. `principal_by_key` is the tracker's
authentication lookup: an unknown or revoked key finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from iot.errors import InputError
from iot.inputs import MAX_NAME, text_problem
from iot.repo._db import Executor, check_ids, check_page_limit
from iot.repo.tenants import Tenant, shown_key
from iot.tokens import TENANT_KEY_PREFIX, new_token, token_hash

SCOPES = ("read", "write", "ingest")

_COLUMNS = "id, tenant_id, name, prefix, scopes, created_at, last_used_at, revoked_at"

SELECT_PRINCIPAL = """
SELECT k.id AS key_id, k.name AS key_name, k.scopes, t.id, t.slug, t.name, t.webhook_url, t.created_at
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL
"""
# At most one write per key a minute: `last used` is for humans, not a hot row on every request.
TOUCH_KEY = """
UPDATE api_keys SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""
INSERT_KEY = f"""
INSERT INTO api_keys (tenant_id, name, key_hash, prefix, scopes) VALUES ($1, $2, $3, $4, $5)
RETURNING {_COLUMNS}
"""
SELECT_KEYS = f"""
SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC LIMIT $3
"""
SELECT_KEY = f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
REVOKE_KEY = f"""
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2
RETURNING {_COLUMNS}
"""
# Rotation keeps the key's row (name, scopes, history) and replaces its secret. The tenant's original key
# also lives in tenants.api_key_hash, which the dashboard's sessions are bound to: keep it in step.
ROTATE_KEY = """
WITH old AS (SELECT key_hash FROM api_keys WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL),
key AS (UPDATE api_keys SET key_hash = $3, prefix = $4 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL
        RETURNING id),
tenant AS (UPDATE tenants SET api_key_hash = $3 WHERE id = $1 AND api_key_hash = (SELECT key_hash FROM old)
           RETURNING id)
SELECT (SELECT id FROM key) AS key_id, (SELECT id FROM tenant) AS tenant_id
"""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    tenant_id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> ApiKey:
        return cls(row["id"], row["tenant_id"], row["name"], row["prefix"], tuple(row["scopes"]),
                   row["created_at"], row["last_used_at"], row["revoked_at"])


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a tenant API request comes from: the tenant and the key it used."""

    tenant: Tenant
    key_id: int
    key_name: str
    scopes: frozenset[str]


def scopes_problem(scopes: list[str] | tuple[str, ...]) -> str | None:
    if not scopes:
        return f"needs at least one scope of {', '.join(SCOPES)}"
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        return f"unknown scope {unknown[0]!r}; use {', '.join(SCOPES)}"
    return None


async def principal_by_key(db: Executor, key: str) -> Principal | None:
    row = await db.fetchrow(SELECT_PRINCIPAL, token_hash(key))
    if row is None:
        return None
    await db.execute(TOUCH_KEY, row["key_id"])
    return Principal(Tenant.from_record(row), row["key_id"], row["key_name"], frozenset(row["scopes"]))


async def create_api_key(db: Executor, tenant_id: int, name: str, scopes: list[str] | tuple[str, ...]) -> tuple[ApiKey, str]:
    """A new key for the tenant; returns it with the key itself (the only time it is visible)."""
    name = name.strip()
    problem = text_problem(name, MAX_NAME) or (None if name else "must not be empty; name the key after its use")
    if problem:
        raise InputError("name", problem)
    problem = scopes_problem(scopes)
    if problem:
        raise InputError("scopes", problem)
    key = new_token(TENANT_KEY_PREFIX)
    ordered = [s for s in SCOPES if s in scopes]
    row = await db.fetchrow(INSERT_KEY, tenant_id, name, token_hash(key), shown_key(key), ordered)
    return ApiKey.from_record(row), key


async def list_api_keys(db: Executor, tenant_id: int, *, before_id: int | None = None, limit: int = 100) -> list[ApiKey]:
    check_page_limit(limit)
    check_ids(before=before_id)
    return [ApiKey.from_record(r) for r in await db.fetch(SELECT_KEYS, tenant_id, before_id, limit)]


async def get_api_key(db: Executor, tenant_id: int, key_id: int) -> ApiKey | None:
    check_ids(key_id=key_id)
    row = await db.fetchrow(SELECT_KEY, tenant_id, key_id)
    return ApiKey.from_record(row) if row else None


async def revoke_api_key(db: Executor, tenant_id: int, key_id: int) -> ApiKey | None:
    """Revoke a key at once (idempotent); None when the tenant has no such key."""
    check_ids(key_id=key_id)
    row = await db.fetchrow(REVOKE_KEY, tenant_id, key_id)
    return ApiKey.from_record(row) if row else None


async def rotate_key(db: Executor, tenant_id: int, key_id: int) -> str | None:
    """Give a live key a new secret (the old one stops working); None when there is no such live key."""
    key = new_token(TENANT_KEY_PREFIX)
    row = await db.fetchrow(ROTATE_KEY, tenant_id, key_id, token_hash(key), shown_key(key))
    return key if row["key_id"] is not None else None
