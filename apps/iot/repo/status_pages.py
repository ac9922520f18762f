"""Status page repository: one tenant's pages (slug, title, logo, components), checked and stored, and the
rows a public page is drawn from. Every query has the tenant id in its WHERE; components resolve to the
tenant's own devices only, so an id or tag of another tenant shows nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import urlsplit

import asyncpg

from iot.errors import Conflict, InputError
from iot.inputs import DNS_LABEL, MAX_NAME, id_problem, normalise_tag, text_problem
from iot.repo._db import Executor, check_page_limit

MAX_COMPONENTS = 1000  # device ids + tags on a page, and the devices they resolve to
MAX_LOGO_URL = 2048
MAX_DESCRIPTION = 1000
MAX_HOST = 253
MAX_PAGES = 200  # status pages per tenant listed (and a sane number to have)
SLUG_RULE = "1-63 lower-case letters, digits and hyphens, not starting or ending with a hyphen (e.g. 'public')"
HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

COLUMNS = ("id, slug, title, description, logo_url, custom_domain, device_ids, tags, published, created_at, "
           "updated_at")

INSERT_PAGE = f"""
INSERT INTO status_pages (tenant_id, slug, title, description, logo_url, custom_domain, device_ids, tags, published)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {COLUMNS}
"""
UPDATE_PAGE = f"""
UPDATE status_pages SET slug = $3, title = $4, description = $5, logo_url = $6, custom_domain = $7,
    device_ids = $8, tags = $9, published = $10, updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING {COLUMNS}
"""
DELETE_PAGE = f"DELETE FROM status_pages WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
SELECT_PAGE = f"SELECT {COLUMNS} FROM status_pages WHERE tenant_id = $1 AND id = $2"
SELECT_PAGES = f"SELECT {COLUMNS} FROM status_pages WHERE tenant_id = $1 ORDER BY slug LIMIT $2"
COUNT_PAGES = "SELECT count(*) FROM status_pages WHERE tenant_id = $1"
SELECT_PUBLISHED = f"SELECT {COLUMNS} FROM status_pages WHERE tenant_id = $1 AND slug = $2 AND published"
# The ids among $2 that are this tenant's devices.
SELECT_OWN_DEVICES = "SELECT id FROM devices WHERE tenant_id = $1 AND id = ANY($2::bigint[])"
# The tags among $2 that at least one of this tenant's devices carries.
SELECT_USED_TAGS = """
SELECT t.tag FROM unnest($2::text[]) AS t(tag)
WHERE EXISTS (SELECT 1 FROM devices d WHERE d.tenant_id = $1 AND d.tags @> ARRAY[t.tag])
"""
COUNT_COMPONENTS = """
SELECT count(*) FROM devices WHERE tenant_id = $1 AND (id = ANY($2::bigint[]) OR tags && $3::text[])
"""
# A page's components: only the tenant's devices, by name; nothing about targets, errors or regions.
SELECT_COMPONENTS = """
SELECT id, name, state, state_since, tags FROM devices
WHERE tenant_id = $1 AND (id = ANY($2::bigint[]) OR tags && $3::text[])
ORDER BY name, id
LIMIT $4
"""
# Open incidents and those resolved since $3 of the page's devices, newest first.
SELECT_PUBLIC_INCIDENTS = """
SELECT id, device_id, kind, opened_at, resolved_at FROM incidents
WHERE tenant_id = $1 AND device_id = ANY($2::bigint[]) AND (resolved_at IS NULL OR resolved_at >= $3)
ORDER BY opened_at DESC, id DESC
LIMIT $4
"""
# The public updates of those incidents: the notes people wrote (not who wrote them).
SELECT_PUBLIC_NOTES = """
SELECT incident_id, at, text FROM incident_events
WHERE tenant_id = $1 AND incident_id = ANY($2::bigint[]) AND kind = 'note'
ORDER BY at DESC, id DESC
LIMIT 2000
"""
SELECT_TENANT_WINDOWS = """
SELECT id, scope, tag, device_id, reason, starts_at, ends_at, rrule, pinned FROM maintenance_windows
WHERE tenant_id = $1
ORDER BY id
LIMIT 5000
"""


@dataclass(frozen=True, slots=True)
class PageSpec:
    slug: str
    title: str
    description: str = ""
    logo_url: str | None = None
    custom_domain: str | None = None
    device_ids: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    published: bool = False


@dataclass(frozen=True, slots=True)
class StatusPage:
    id: int
    slug: str
    title: str
    description: str
    logo_url: str | None
    custom_domain: str | None
    device_ids: list[int]
    tags: list[str]
    published: bool
    created_at: datetime
    updated_at: datetime


def _page(row: object) -> StatusPage:
    values = dict(row)  # type: ignore[call-overload]
    return StatusPage(**{**values, "device_ids": list(values["device_ids"]), "tags": list(values["tags"])})


def slug_problem(slug: str) -> str | None:
    if not DNS_LABEL.fullmatch(slug):
        return f"must be {SLUG_RULE}; got {slug[:70]!r}"
    return None


def logo_problem(url: str) -> str | None:
    problem = text_problem(url, MAX_LOGO_URL, min_length=1)
    if problem:
        return problem
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"not a valid URL: {url[:80]!r}; send an https:// address of an image"
    if parts.scheme != "https" or not host:
        return f"must be an https:// address of an image (got {url[:80]!r}): visitors' browsers load it"
    if parts.username or parts.password:
        return "must not carry a user name or password; send a public https:// address"
    return None


def host_problem(host: str) -> str | None:
    """Why `host` is not a DNS host name like status.example.com (lower case, two labels at least)."""
    if len(host) > MAX_HOST:
        return f"must be at most {MAX_HOST} characters (got {len(host)})"
    labels = host.split(".")
    if len(labels) < 2 or not all(HOST_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return f"must be a host name like status.example.com (no scheme, port or path); got {host[:80]!r}"
    return None


async def check_spec(db: Executor, tenant_id: int, spec: PageSpec) -> PageSpec:
    """The spec normalised and checked against the tenant's devices and tags (InputError names the field)."""
    slug = spec.slug.strip().lower()
    problem = slug_problem(slug)
    if problem:
        raise InputError("slug", problem)
    title = spec.title.strip()
    problem = text_problem(title, MAX_NAME, min_length=1)
    if problem:
        raise InputError("title", f"{problem}; e.g. 'Acme service status'")
    description = spec.description.strip()
    problem = text_problem(description.replace("\n", " ").replace("\r", " "), MAX_DESCRIPTION)
    if problem:
        raise InputError("description", problem)
    logo = (spec.logo_url or "").strip() or None
    if logo is not None and (problem := logo_problem(logo)):
        raise InputError("logo_url", problem)
    domain = (spec.custom_domain or "").strip().lower().rstrip(".") or None
    if domain is not None and (problem := host_problem(domain)):
        raise InputError("custom_domain", problem)
    device_ids = list(dict.fromkeys(spec.device_ids))
    tags: list[str] = []
    for i, value in enumerate(spec.tags):
        tag, problem = normalise_tag(value)
        if problem:
            raise InputError(f"tags[{i}]", problem)
        if tag not in tags:
            tags.append(tag)
    if len(device_ids) + len(tags) > MAX_COMPONENTS:
        raise InputError("device_ids", f"at most {MAX_COMPONENTS} device ids and tags together (got "
                                       f"{len(device_ids) + len(tags)}); split the page or use tags")
    for i, device_id in enumerate(device_ids):
        if id_problem(device_id):
            raise InputError(f"device_ids[{i}]", id_problem(device_id))  # type: ignore[arg-type]
    own = {r["id"] for r in await db.fetch(SELECT_OWN_DEVICES, tenant_id, device_ids)} if device_ids else set()
    for i, device_id in enumerate(device_ids):
        if device_id not in own:
            raise InputError(f"device_ids[{i}]", f"no such device: {device_id}; send one of your device ids")
    used = {r["tag"] for r in await db.fetch(SELECT_USED_TAGS, tenant_id, tags)} if tags else set()
    for i, tag in enumerate(tags):
        if tag not in used:
            raise InputError(f"tags[{i}]", f"no device carries the tag {tag!r}; tag a device first or remove it")
    if tags:
        count = await db.fetchval(COUNT_COMPONENTS, tenant_id, device_ids, tags)
        if count > MAX_COMPONENTS:
            raise InputError("tags", f"these devices and tags cover {count} devices, at most {MAX_COMPONENTS} "
                                     "fit on one page; split it into several pages")
    return replace(spec, slug=slug, title=title, description=description, logo_url=logo, custom_domain=domain,
                   device_ids=device_ids, tags=tags)


def _args(spec: PageSpec) -> tuple[object, ...]:
    return (spec.slug, spec.title, spec.description, spec.logo_url, spec.custom_domain, spec.device_ids, spec.tags,
            spec.published)


def _taken(slug: str) -> Conflict:
    return Conflict("slug", f"another of your status pages is at /status/{slug}; choose another slug")


async def create_page(db: Executor, tenant_id: int, spec: PageSpec) -> StatusPage:
    spec = await check_spec(db, tenant_id, spec)
    if await db.fetchval(COUNT_PAGES, tenant_id) >= MAX_PAGES:
        raise InputError("slug", f"at most {MAX_PAGES} status pages per tenant; delete one you no longer use")
    try:
        return _page(await db.fetchrow(INSERT_PAGE, tenant_id, *_args(spec)))
    except asyncpg.UniqueViolationError:
        raise _taken(spec.slug) from None


async def update_page(db: Executor, tenant_id: int, page_id: int, spec: PageSpec) -> tuple[StatusPage, StatusPage] | None:
    """Replace a page: (before, after), or None when the tenant has no such page."""
    if id_problem(page_id):
        return None
    spec = await check_spec(db, tenant_id, spec)
    before = await get_page(db, tenant_id, page_id)
    if before is None:
        return None
    try:
        row = await db.fetchrow(UPDATE_PAGE, tenant_id, page_id, *_args(spec))
    except asyncpg.UniqueViolationError:
        raise _taken(spec.slug) from None
    return None if row is None else (before, _page(row))


async def delete_page(db: Executor, tenant_id: int, page_id: int) -> StatusPage | None:
    if id_problem(page_id):
        return None
    row = await db.fetchrow(DELETE_PAGE, tenant_id, page_id)
    return None if row is None else _page(row)


async def get_page(db: Executor, tenant_id: int, page_id: int) -> StatusPage | None:
    if id_problem(page_id):
        return None
    row = await db.fetchrow(SELECT_PAGE, tenant_id, page_id)
    return None if row is None else _page(row)


async def list_pages(db: Executor, tenant_id: int, *, limit: int = 200) -> list[StatusPage]:
    check_page_limit(limit)
    return [_page(r) for r in await db.fetch(SELECT_PAGES, tenant_id, limit)]


async def published_page(db: Executor, tenant_id: int, slug: str) -> StatusPage | None:
    """The tenant's published page at `slug`; None for unknown, unpublished or malformed slugs."""
    if slug_problem(slug):
        return None
    row = await db.fetchrow(SELECT_PUBLISHED, tenant_id, slug)
    return None if row is None else _page(row)
