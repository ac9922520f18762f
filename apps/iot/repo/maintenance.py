"""Maintenance window repository: one tenant's windows (tenant, tag or device scope), checked and stored.

The worker reads every tenant's windows at once (`SELECT_ALL_WINDOWS`, see `iot.worker.maintenance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from iot.errors import Conflict, InputError
from iot.inputs import id_problem, normalise_tag, text_problem
from iot.maintenance import MAX_REASON, Times, current_or_next, occurrences
from iot.repo._db import Executor, check_page_limit, connection

COLUMNS = "id, scope, tag, device_id, reason, starts_at, ends_at, rrule, pinned, created_at"

# Every expansion (the worker's cache, status pages, uptime) walks all of a tenant's windows: keep them few.
MAX_WINDOWS = 200
COUNT_WINDOWS = "SELECT count(*) FROM maintenance_windows WHERE tenant_id = $1"
# Serialises creation per tenant so two concurrent creates cannot both pass the count (NO KEY: rows that
# reference the tenant can still be written meanwhile).
LOCK_TENANT = "SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE"
INSERT_WINDOW = f"""
INSERT INTO maintenance_windows (tenant_id, scope, tag, device_id, reason, starts_at, ends_at, rrule, pinned)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {COLUMNS}
"""
UPDATE_WINDOW = f"""
UPDATE maintenance_windows SET scope = $3, tag = $4, device_id = $5, reason = $6, starts_at = $7, ends_at = $8,
    rrule = $9, pinned = $10
WHERE tenant_id = $1 AND id = $2
RETURNING {COLUMNS}
"""
DELETE_WINDOW = "DELETE FROM maintenance_windows WHERE tenant_id = $1 AND id = $2"
SELECT_WINDOW = f"SELECT {COLUMNS} FROM maintenance_windows WHERE tenant_id = $1 AND id = $2"
# Newest first (pages by id); pinned ones are put first within a page by the caller.
SELECT_WINDOWS = f"""
SELECT {COLUMNS} FROM maintenance_windows
WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC
LIMIT $3
"""
# The windows that can cover one device: the tenant's, its tags', its own.
SELECT_DEVICE_WINDOWS = f"""
SELECT {COLUMNS} FROM maintenance_windows w
WHERE w.tenant_id = $1
  AND (w.scope = 'tenant' OR w.device_id = $2
       OR (w.scope = 'tag' AND w.tag = ANY(SELECT unnest(tags) FROM devices WHERE id = $2 AND tenant_id = $1)))
ORDER BY w.starts_at, w.id
"""
TAG_IN_USE = "SELECT EXISTS (SELECT 1 FROM devices WHERE tenant_id = $1 AND tags @> ARRAY[$2::text])"
DEVICE_EXISTS = "SELECT EXISTS (SELECT 1 FROM devices WHERE tenant_id = $1 AND id = $2)"

# Every window that may still have an occurrence, for the worker's cache (all tenants, one read).
SELECT_ALL_WINDOWS = """
SELECT id, tenant_id, scope, tag, device_id, reason, starts_at, ends_at, rrule
FROM maintenance_windows
WHERE rrule IS NOT NULL OR ends_at > now() - interval '1 hour'
"""
# Device ids carrying each tag used by a tag window ($1: tenant ids, $2: tags, pairwise).
SELECT_TAGGED_DEVICES = """
SELECT v.tenant_id, v.tag, array_agg(d.id) AS ids
FROM unnest($1::bigint[], $2::text[]) AS v(tenant_id, tag)
JOIN devices d ON d.tenant_id = v.tenant_id AND d.tags @> ARRAY[v.tag]
GROUP BY v.tenant_id, v.tag
"""

SCOPES = ("tenant", "tag", "device")


@dataclass(frozen=True, slots=True)
class WindowSpec:
    scope: str
    reason: str
    times: Times
    tag: str | None = None
    device_id: int | None = None
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class Window:
    id: int
    scope: str
    tag: str | None
    device_id: int | None
    reason: str
    starts_at: datetime
    ends_at: datetime
    rrule: str | None
    pinned: bool
    created_at: datetime
    # The occurrence in progress now, else the next one (None: all in the past)
    next_starts_at: datetime | None = None
    next_ends_at: datetime | None = None
    active: bool = False

    @property
    def times(self) -> Times:
        return Times(self.starts_at, self.ends_at, self.rrule)


def _window(row: object, now: datetime) -> Window:
    values = dict(row)  # type: ignore[call-overload]
    occurrence = current_or_next(Times(values["starts_at"], values["ends_at"], values["rrule"]), now)
    if occurrence is None:
        return Window(**values)
    start, end = occurrence
    return Window(**values, next_starts_at=start, next_ends_at=end, active=start <= now < end)


async def check_spec(db: Executor, tenant_id: int, spec: WindowSpec) -> WindowSpec:
    """The spec with its scope checked against the tenant's devices and tags (InputError names the field)."""
    problem = text_problem(spec.reason.strip(), MAX_REASON, min_length=1)
    if problem:
        raise InputError("reason", f"{problem}; say why (e.g. 'firmware upgrade')")
    if spec.scope not in SCOPES:
        raise InputError("scope", f"must be one of {', '.join(SCOPES)}")
    tag, device_id = spec.tag, spec.device_id
    if spec.scope == "tag":
        if not tag:
            raise InputError("tag", "required when scope is 'tag'; send a tag your devices carry")
        tag, tag_problem = normalise_tag(tag)
        if tag_problem:
            raise InputError("tag", tag_problem)
        if not await db.fetchval(TAG_IN_USE, tenant_id, tag):
            raise InputError("tag", f"no device carries the tag {tag!r}; tag a device first or choose another tag")
    elif tag:
        raise InputError("tag", f"only for scope 'tag' (scope is {spec.scope!r}); remove it")
    if spec.scope == "device":
        if device_id is None:
            raise InputError("device_id", "required when scope is 'device'; send one of your device ids")
        if id_problem(device_id) or not await db.fetchval(DEVICE_EXISTS, tenant_id, device_id):
            raise InputError("device_id", f"no such device: {device_id}; send one of your device ids")
    elif device_id is not None:
        raise InputError("device_id", f"only for scope 'device' (scope is {spec.scope!r}); remove it")
    return WindowSpec(spec.scope, spec.reason.strip(), spec.times, tag if spec.scope == "tag" else None,
                      device_id if spec.scope == "device" else None, spec.pinned)


def _args(spec: WindowSpec) -> tuple[object, ...]:
    t = spec.times
    return (spec.scope, spec.tag, spec.device_id, spec.reason, t.starts_at, t.ends_at, t.rrule, spec.pinned)


async def create_window(db: Executor, tenant_id: int, spec: WindowSpec) -> Window:
    spec = await check_spec(db, tenant_id, spec)
    async with connection(db) as conn, conn.transaction():
        await conn.execute(LOCK_TENANT, tenant_id)
        if await conn.fetchval(COUNT_WINDOWS, tenant_id) >= MAX_WINDOWS:
            raise Conflict("body", f"at most {MAX_WINDOWS} maintenance windows per tenant; delete finished ones "
                                   "or cover many devices with one (scope tag or tenant)")
        return _window(await conn.fetchrow(INSERT_WINDOW, tenant_id, *_args(spec)), datetime.now(UTC))


async def update_window(db: Executor, tenant_id: int, window_id: int, spec: WindowSpec) -> Window | None:
    """Replace a window; None when the tenant has no such window."""
    spec = await check_spec(db, tenant_id, spec)
    row = await db.fetchrow(UPDATE_WINDOW, tenant_id, window_id, *_args(spec))
    return None if row is None else _window(row, datetime.now(UTC))


async def delete_window(db: Executor, tenant_id: int, window_id: int) -> bool:
    return await db.execute(DELETE_WINDOW, tenant_id, window_id) == "DELETE 1"


async def get_window(db: Executor, tenant_id: int, window_id: int) -> Window | None:
    row = await db.fetchrow(SELECT_WINDOW, tenant_id, window_id)
    return None if row is None else _window(row, datetime.now(UTC))


async def list_windows(db: Executor, tenant_id: int, *, before_id: int | None = None,
                       limit: int = 100) -> list[Window]:
    """Newest first; each with its current or next occurrence."""
    check_page_limit(limit)
    now = datetime.now(UTC)
    return [_window(r, now) for r in await db.fetch(SELECT_WINDOWS, tenant_id, before_id, limit)]


async def device_windows(db: Executor, tenant_id: int, device_id: int) -> list[Window]:
    """Windows covering the device now or later (active first, then by next start)."""
    now = datetime.now(UTC)
    windows = [_window(r, now) for r in await db.fetch(SELECT_DEVICE_WINDOWS, tenant_id, device_id)]
    upcoming = [w for w in windows if w.next_starts_at is not None]
    return sorted(upcoming, key=lambda w: (not w.active, w.next_starts_at))


async def device_intervals(db: Executor, tenant_id: int, device_id: int, since: datetime,
                           until: datetime) -> list[tuple[datetime, datetime]]:
    """Every occurrence of the windows covering the device that overlaps [since, until): what uptime
    leaves out. Tag windows count by the device's tags now (tags are not kept as history)."""
    rows = await db.fetch(SELECT_DEVICE_WINDOWS, tenant_id, device_id)
    return [span for r in rows for span in occurrences(Times(r["starts_at"], r["ends_at"], r["rrule"]), since, until)]
