"""Webhook repository: a tenant's webhook settings (URL, signing secrets and their rotation) and the
log of its deliveries, newest first. The worker's outbox (`worker.outbox`) sends them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.errors import InputError
from iot.inputs import MAX_SECRET, MIN_SECRET, target_text_problem, text_problem, url_port_problem
from iot.repo._db import Executor, check_ids, check_page_limit
from iot.tokens import new_webhook_secret

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
SELECT_DELIVERIES = """
SELECT id, event_id, event_type, status, attempts, next_attempt_at, last_status_code, last_error,
       created_at, delivered_at, payload
FROM webhook_deliveries
WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2) AND ($3::text IS NULL OR status = $3)
ORDER BY id DESC
LIMIT $4
"""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str | None
    secret: str | None
    previous_secret_expires_at: datetime | None = None  # deliveries are signed with both until then


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = field(default_factory=dict)


async def webhook_url_problem(url: str, egress: EgressPolicy) -> str | None:
    """Why the worker would refuse to deliver to `url`, or None: https to a public address, or an
    allow-listed address (plain http is allowed only there)."""
    problem = target_text_problem(url)
    if problem:
        return problem
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host, e.g. https://example.com/hooks/iot"
    if problem := url_port_problem(url):
        return problem
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


async def list_webhook_deliveries(
    db: Executor, tenant_id: int, *, status: str | None = None, before_id: int | None = None, limit: int = 50
) -> list[WebhookDelivery]:
    check_page_limit(limit)
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise InputError("status", "must be pending, delivered or failed")
    check_ids(before=before_id)
    rows = await db.fetch(SELECT_DELIVERIES, tenant_id, before_id, status, limit)
    return [WebhookDelivery(**dict(r)) for r in rows]
