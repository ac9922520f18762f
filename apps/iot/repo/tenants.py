"""Tenant repository: creation, API-key lookup and rotation (webhook settings: `repo.webhooks`).

Used by the tracker and the dashboard. API keys are returned once at creation/rotation; only their
sha256 is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from iot.errors import Conflict, InputError
from iot.inputs import MAX_NAME, text_problem
from iot.names import slug_problem
from iot.repo._db import Executor
from iot.tokens import TENANT_KEY_PREFIX, new_token, token_hash

# The tenant's key is also its first row in api_keys (every scope), where the tracker looks keys up.
INSERT_TENANT = """
WITH tenant AS (
    INSERT INTO tenants (slug, name, api_key_hash) VALUES ($1, $2, $3)
    ON CONFLICT (slug) DO NOTHING
    RETURNING id, slug, name, webhook_url, created_at
), key AS (
    INSERT INTO api_keys (tenant_id, name, key_hash, prefix, scopes)
    SELECT id, 'original key', $3, $4, ARRAY['read', 'write', 'ingest'] FROM tenant
)
SELECT * FROM tenant
"""
# The original key signs in to the dashboard only while its api_keys row is live: revoking it there counts.
SELECT_TENANT_BY_KEY_HASH = """
SELECT t.id, t.slug, t.name, t.webhook_url, t.created_at FROM tenants t
JOIN api_keys k ON k.tenant_id = t.id AND k.key_hash = t.api_key_hash AND k.revoked_at IS NULL
WHERE t.api_key_hash = $1
"""
SELECT_TENANT_BY_SLUG = "SELECT id, slug, name, webhook_url, created_at FROM tenants WHERE slug = $1"
# The original key: its api_keys row (if not revoked) follows tenants.api_key_hash.
UPDATE_API_KEY = """
WITH old AS (SELECT api_key_hash FROM tenants WHERE id = $1),
key AS (UPDATE api_keys SET key_hash = $2, prefix = $3
        WHERE tenant_id = $1 AND key_hash = (SELECT api_key_hash FROM old) AND revoked_at IS NULL)
UPDATE tenants SET api_key_hash = $2 WHERE id = $1
"""
@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    slug: str
    name: str
    webhook_url: str | None
    created_at: datetime

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Tenant:
        return cls(row["id"], row["slug"], row["name"], row["webhook_url"], row["created_at"])


async def create_tenant(
    db: Executor, slug: str, name: str = "", *, monitor_names: frozenset[str] = frozenset()
) -> tuple[Tenant, str]:
    """Create a tenant; return it with its API key (the only time the key is visible)."""
    problem = slug_problem(slug, monitor_names)
    if problem:
        raise InputError("slug", problem)
    problem = text_problem(name, MAX_NAME)
    if problem:
        raise InputError("name", problem)
    api_key = new_token(TENANT_KEY_PREFIX)
    row = await db.fetchrow(INSERT_TENANT, slug, name or slug, token_hash(api_key), shown_key(api_key))
    if row is None:
        raise Conflict("slug", f"slug {slug!r} is already taken; choose another name")
    return Tenant.from_record(row), api_key


def shown_key(api_key: str) -> str:
    """The part of a key shown in lists, so a tenant tells its keys apart."""
    return api_key[:len(TENANT_KEY_PREFIX) + 6] + "…"


async def tenant_by_api_key(db: Executor, api_key: str) -> Tenant | None:
    """The tenant whose original key (tenants.api_key_hash) this is: the dashboard's first sign-in."""
    row = await db.fetchrow(SELECT_TENANT_BY_KEY_HASH, token_hash(api_key))
    return Tenant.from_record(row) if row else None


async def tenant_by_slug(db: Executor, slug: str) -> Tenant | None:
    row = await db.fetchrow(SELECT_TENANT_BY_SLUG, slug)
    return Tenant.from_record(row) if row else None


async def rotate_api_key(db: Executor, tenant_id: int) -> str:
    """Replace the tenant's original API key; the old one stops working at once. Returns the new key."""
    api_key = new_token(TENANT_KEY_PREFIX)
    await db.execute(UPDATE_API_KEY, tenant_id, token_hash(api_key), shown_key(api_key))
    return api_key
