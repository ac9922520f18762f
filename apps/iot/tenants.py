"""Tenant repository: creation, API-key lookup and rotation, webhook settings.

Used by the tracker and the dashboard. API keys are returned once at creation/rotation; only their
sha256 is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import asyncpg

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.errors import Conflict, InputError
from iot.inputs import MAX_NAME, MAX_SECRET, MIN_SECRET, target_text_problem, text_problem
from iot.names import slug_problem
from iot.tokens import TENANT_KEY_PREFIX, new_token, new_webhook_secret, token_hash

Executor = asyncpg.Connection | asyncpg.Pool

INSERT_TENANT = """
INSERT INTO tenants (slug, name, api_key_hash) VALUES ($1, $2, $3)
ON CONFLICT (slug) DO NOTHING
RETURNING id, slug, name, webhook_url, created_at
"""
SELECT_TENANT_BY_KEY_HASH = "SELECT id, slug, name, webhook_url, created_at FROM tenants WHERE api_key_hash = $1"
SELECT_TENANT_BY_SLUG = "SELECT id, slug, name, webhook_url, created_at FROM tenants WHERE slug = $1"
SELECT_TENANT_BY_ID = "SELECT id, slug, name, webhook_url, created_at FROM tenants WHERE id = $1"
UPDATE_API_KEY = "UPDATE tenants SET api_key_hash = $2 WHERE id = $1"
# A changed secret becomes the previous one, valid $4 more seconds (0: not at all); the same secret again
# leaves a running rotation alone.
UPDATE_WEBHOOK = """
UPDATE tenants SET
    webhook_secret_previous = CASE WHEN webhook_secret IS NOT DISTINCT FROM $3 THEN webhook_secret_previous
                                   WHEN $4::int > 0 THEN webhook_secret END,
    webhook_secret_previous_until = CASE WHEN webhook_secret IS NOT DISTINCT FROM $3 THEN webhook_secret_previous_until
                                         WHEN $4::int > 0 AND webhook_secret IS NOT NULL
                                         THEN now() + make_interval(secs => $4::int) END,
    webhook_url = $2, webhook_secret = $3
WHERE id = $1
RETURNING CASE WHEN webhook_secret_previous_until > now() THEN webhook_secret_previous_until END AS previous_until
"""
CLEAR_WEBHOOK = """
UPDATE tenants SET webhook_url = NULL, webhook_secret = NULL, webhook_secret_previous = NULL,
    webhook_secret_previous_until = NULL
WHERE id = $1
"""
SELECT_WEBHOOK = """
SELECT webhook_url, webhook_secret,
       CASE WHEN webhook_secret_previous_until > now() THEN webhook_secret_previous_until END AS previous_until
FROM tenants WHERE id = $1
"""
# How long a replaced webhook secret keeps signing deliveries, unless the tenant says otherwise.
PREVIOUS_SECRET_VALID_S = 86400
MAX_PREVIOUS_SECRET_VALID_S = 7 * 86400


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


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str | None
    secret: str | None
    previous_secret_expires_at: datetime | None = None  # deliveries are signed with both until then


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
    row = await db.fetchrow(INSERT_TENANT, slug, name or slug, token_hash(api_key))
    if row is None:
        raise Conflict("slug", f"slug {slug!r} is already taken; choose another name")
    return Tenant.from_record(row), api_key


async def tenant_by_api_key(db: Executor, api_key: str) -> Tenant | None:
    row = await db.fetchrow(SELECT_TENANT_BY_KEY_HASH, token_hash(api_key))
    return Tenant.from_record(row) if row else None


async def tenant_by_slug(db: Executor, slug: str) -> Tenant | None:
    row = await db.fetchrow(SELECT_TENANT_BY_SLUG, slug)
    return Tenant.from_record(row) if row else None


async def tenant_by_id(db: Executor, tenant_id: int) -> Tenant | None:
    row = await db.fetchrow(SELECT_TENANT_BY_ID, tenant_id)
    return Tenant.from_record(row) if row else None


async def rotate_api_key(db: Executor, tenant_id: int) -> str:
    """Replace the tenant's API key; the old one stops working at once. Returns the new key."""
    api_key = new_token(TENANT_KEY_PREFIX)
    await db.execute(UPDATE_API_KEY, tenant_id, token_hash(api_key))
    return api_key


async def webhook_url_problem(url: str, egress: EgressPolicy) -> str | None:
    """Why the worker would refuse to deliver to `url`, or None: https to a public address, or an
    allow-listed address (plain http is allowed only there)."""
    problem = target_text_problem(url)
    if problem:
        return problem
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host, e.g. https://example.com/hooks/iot"
    host = parts.hostname
    problems = await egress.registration_problems([host])
    if host in problems:
        return f"{problems[host]}; webhooks are delivered to public internet addresses only"
    if parts.scheme == "http" and not await egress.all_allow_listed(host):
        return (f"{url!r} is plain http; use an https:// URL (plain http is delivered only to addresses "
                "the operator allow-listed)")
    return None


async def set_webhook(
    db: Executor, tenant_id: int, url: str | None, secret: str | None = None, *,
    egress: EgressPolicy = PUBLIC_ONLY, previous_secret_valid_s: int = PREVIOUS_SECRET_VALID_S,
) -> WebhookSettings:
    """Set (or clear, with url=None) the webhook; a secret is generated when none is given.

    A new secret replaces the current one, which keeps signing deliveries (as a second signature) for
    `previous_secret_valid_s` seconds, so receivers can switch without rejecting events.
    """
    if url is None:
        await db.execute(CLEAR_WEBHOOK, tenant_id)
        return WebhookSettings(None, None)
    problem = await webhook_url_problem(url, egress)
    if problem:
        raise InputError("url", problem)
    if secret is not None and len(secret) < MIN_SECRET:
        raise InputError("secret", f"must be at least {MIN_SECRET} characters (or omit it to get a generated one)")
    problem = text_problem(secret, MAX_SECRET) if secret is not None else None
    if problem:
        raise InputError("secret", problem)
    if not 0 <= previous_secret_valid_s <= MAX_PREVIOUS_SECRET_VALID_S:
        raise InputError("previous_secret_valid_s", f"must be between 0 and {MAX_PREVIOUS_SECRET_VALID_S} seconds")
    secret = secret or new_webhook_secret()
    previous_until = await db.fetchval(UPDATE_WEBHOOK, tenant_id, url, secret, previous_secret_valid_s)
    return WebhookSettings(url, secret, previous_until)


async def get_webhook(db: Executor, tenant_id: int) -> WebhookSettings:
    row = await db.fetchrow(SELECT_WEBHOOK, tenant_id)
    if row is None:
        return WebhookSettings(None, None)
    return WebhookSettings(row["webhook_url"], row["webhook_secret"], row["previous_until"])
