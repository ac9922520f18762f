"""Device repository: create (bulk), list, read, update, delete, ingest-token lookup, incidents, webhooks.

Used by the tracker API and the dashboard. Every function takes the tenant id, and every query filters
on it, so one tenant can never reach another tenant's rows: a foreign id behaves exactly like a missing
one. Callers that change devices must call `notify_devices_changed` so the worker reloads its table.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.errors import Conflict, InputError
from iot.inputs import (
    DNS_LABEL,
    INT8_MAX,
    MAX_LABEL,
    MAX_NAME,
    MAX_SEARCH,
    control_character_problem,
    id_problem,
    target_text_problem,
    text_problem,
)
from iot.protocol import DEVICES_VERSION_KEY, MONITOR_HEARTBEATS_KEY, region_of_member
from iot.quotas import DEFAULT_QUOTAS, Quotas, Usage, admit, check_rate, effective, locked_usage
from iot.tokens import DEVICE_TOKEN_PREFIX, new_token, token_hash

Executor = asyncpg.Connection | asyncpg.Pool

KINDS = ("http", "tcp", "icmp", "push")
STATES = ("up", "down", "degraded", "unknown")
SORTS = ("id", "name", "state", "latency")
# Sorting by state shows the worst first.
STATE_SEVERITY = ("down", "degraded", "unknown", "up")
MAX_PAGE = 1000

DEVICE_COLUMNS = (
    "d.id, d.tenant_id, d.name, d.kind, d.target, d.interval_s, d.timeout_ms, d.grace_s, d.parent_id, "
    "d.enabled, d.anomaly_factor, d.anomaly_min_ms, d.anomaly_checks, d.state, d.state_since, "
    "d.last_seen_at, d.created_at, d.updated_at"
)
# Mean of the last successful latency over the regions (NULL when no region has one).
LATENCY_EXPR = (
    "(SELECT avg(r.last_latency_ms) FROM device_region_state r WHERE r.device_id = d.id AND r.last_ok)"
)
# The same mean for every device of tenant $1, aggregated in one pass. A latency sort joins this (as `lat`)
# instead of running LATENCY_EXPR once per row it sorts or skips (10,000+ subplans at 10,000 devices).
TENANT_LATENCY = """
SELECT r.device_id, avg(r.last_latency_ms) AS latency_ms
FROM device_region_state r JOIN devices t ON t.id = r.device_id
WHERE t.tenant_id = $1 AND r.last_ok
GROUP BY r.device_id
"""
SORT_EXPRESSIONS = {
    "id": "d.id",
    "name": "d.name",
    "state": "array_position(ARRAY['down','degraded','unknown','up'], d.state)",
    # NULL (never measured) sorts as slowest, and stays comparable for the keyset cursor.
    "latency": "coalesce(lat.latency_ms, 'Infinity'::float8)",
}
# Joins a sort expression needs (the page-id query of `list_devices` only).
SORT_JOINS = {"latency": f"LEFT JOIN ({TENANT_LATENCY}) lat ON lat.device_id = d.id"}

INSERT_DEVICES = """
INSERT INTO devices (tenant_id, name, kind, target, interval_s, timeout_ms, grace_s, parent_id, enabled,
                     token_hash, anomaly_factor, anomaly_min_ms, anomaly_checks)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::int[], $8::bigint[],
                         $9::bool[], $10::text[], $11::real[], $12::real[], $13::int[])
RETURNING id, name
"""
SELECT_EXISTING_NAMES = "SELECT name FROM devices WHERE tenant_id = $1 AND name = ANY($2::text[])"
SELECT_OWN_IDS = "SELECT id FROM devices WHERE tenant_id = $1 AND id = ANY($2::bigint[])"
SELECT_DEVICE = f"SELECT {DEVICE_COLUMNS}, {LATENCY_EXPR} AS latency_ms FROM devices d WHERE d.tenant_id = $1 AND d.id = $2"
SELECT_DEVICE_FOR_UPDATE = f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.tenant_id = $1 AND d.id = $2 FOR UPDATE"
SELECT_REGION_STATES = """
SELECT region, state, last_ok, last_latency_ms, last_error, last_checked_at, consecutive_failures,
       latency_mean_ms, sqrt(greatest(latency_var_ms2, 0)) AS latency_stddev_ms, samples
FROM device_region_state WHERE device_id = $1 ORDER BY region
"""
# Is $3 (the proposed parent) a descendant of $2 (the device)? Then the change would make a cycle.
SELECT_IS_DESCENDANT = """
WITH RECURSIVE tree(id) AS (
    SELECT id FROM devices WHERE parent_id = $2 AND tenant_id = $1
    UNION
    SELECT d.id FROM devices d JOIN tree t ON d.parent_id = t.id WHERE d.tenant_id = $1
)
SELECT EXISTS (SELECT 1 FROM tree WHERE id = $3)
"""
UPDATE_DEVICE = """
UPDATE devices SET name = $3, kind = $4, target = $5, interval_s = $6, timeout_ms = $7, grace_s = $8,
       parent_id = $9, enabled = $10, anomaly_factor = $11, anomaly_min_ms = $12, anomaly_checks = $13,
       updated_at = now()
WHERE tenant_id = $1 AND id = $2
"""
DELETE_DEVICE = "DELETE FROM devices WHERE tenant_id = $1 AND id = $2 RETURNING id"
UPDATE_DEVICE_TOKEN = "UPDATE devices SET token_hash = $3 WHERE tenant_id = $1 AND id = $2 RETURNING id"
SELECT_DEVICE_BY_TOKEN = """
SELECT d.id, d.tenant_id, d.kind, d.enabled, q.points_per_second
FROM devices d LEFT JOIN tenant_quotas q ON q.tenant_id = d.tenant_id
WHERE d.token_hash = $1
"""
SELECT_STATE_COUNTS = "SELECT state, count(*) AS n FROM devices WHERE tenant_id = $1 GROUP BY state"
SELECT_INCIDENTS = """
SELECT i.id, i.device_id, d.name AS device_name, i.kind, i.summary, i.details, i.cause_device_id,
       i.opened_at, i.resolved_at
FROM incidents i JOIN devices d ON d.id = i.device_id
WHERE i.tenant_id = $1
  AND ($2::bigint IS NULL OR i.device_id = $2)
  AND (NOT $3::bool OR i.resolved_at IS NULL)
  AND ($4::bigint IS NULL OR i.id < $4)
ORDER BY i.id DESC
LIMIT $5
"""
SELECT_DELIVERIES = """
SELECT id, event_id, event_type, status, attempts, next_attempt_at, last_status_code, last_error,
       created_at, delivered_at, payload
FROM webhook_deliveries
WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2) AND ($3::text IS NULL OR status = $3)
ORDER BY id DESC
LIMIT $4
"""

# Matched with `fullmatch` (`$` would let "host\n" through).
HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


@dataclass(slots=True)
class DeviceSpec:
    """What a tenant says about a device (create input, and the full state an update is checked against)."""

    name: str
    kind: str
    target: str | None = None
    interval_s: int = 60
    timeout_ms: int = 5000
    grace_s: int | None = None
    parent_id: int | None = None
    enabled: bool = True
    anomaly_factor: float | None = None
    anomaly_min_ms: float | None = None
    anomaly_checks: int | None = None


EDITABLE_FIELDS = frozenset(f.name for f in fields(DeviceSpec))


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    tenant_id: int
    name: str
    kind: str
    target: str | None
    interval_s: int
    timeout_ms: int
    grace_s: int | None
    parent_id: int | None
    enabled: bool
    anomaly_factor: float | None
    anomaly_min_ms: float | None
    anomaly_checks: int | None
    state: str
    state_since: datetime
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime
    latency_ms: float | None = None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Device:
        values = dict(row)
        latency = values.pop("latency_ms", None)
        return cls(**values, latency_ms=latency)

    def spec(self) -> DeviceSpec:
        return DeviceSpec(**{name: getattr(self, name) for name in EDITABLE_FIELDS})


@dataclass(frozen=True, slots=True)
class RegionState:
    region: str
    state: str
    last_ok: bool | None
    last_latency_ms: float | None
    last_error: str | None
    last_checked_at: datetime | None
    consecutive_failures: int
    latency_mean_ms: float | None
    latency_stddev_ms: float | None
    samples: int


@dataclass(frozen=True, slots=True)
class DeviceDetail:
    device: Device
    regions: list[RegionState]


@dataclass(frozen=True, slots=True)
class CreatedDevice:
    id: int
    name: str
    token: str  # shown once


@dataclass(frozen=True, slots=True)
class IngestDevice:
    id: int
    tenant_id: int
    kind: str
    enabled: bool
    points_per_second: float | None = None  # the tenant's override of QUOTA_POINTS_PER_SECOND


@dataclass(slots=True)
class DeviceQuery:
    state: str | None = None
    kind: str | None = None
    region: str | None = None
    region_state: str | None = None  # with `region`: that region's view of the device
    text: str | None = None  # substring of name or target
    parent_id: int | None = None
    sort: Literal["id", "name", "state", "latency"] = "id"
    descending: bool = False
    limit: int = 100
    offset: int = 0
    cursor: str | None = None  # from DevicePage.next_cursor; continues the same sort


@dataclass(frozen=True, slots=True)
class DevicePage:
    items: list[Device]
    total: int
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    device_id: int
    device_name: str
    kind: str
    summary: str
    details: dict[str, Any]
    cause_device_id: int | None
    opened_at: datetime
    resolved_at: datetime | None


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


# --- validation -------------------------------------------------------------------------------------


def target_problem(kind: str, target: str | None) -> str | None:
    """Why `target` does not fit a device of `kind`, or None."""
    if kind == "push":
        return "push devices have no target (they send to the tracker); omit it" if target else None
    if not target:
        examples = {"http": "https://pump-1.example.com/health", "tcp": "gateway-1.example.com:502",
                    "icmp": "gateway-1.example.com"}
        return f"required for kind {kind!r}, e.g. {examples.get(kind, '...')!r}"
    problem = target_text_problem(target)
    if problem:
        return problem
    if kind == "http":
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{target!r} is not an http(s) URL with a host, e.g. 'http://pump-1.example.com:8080/health'"
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            return f"{target!r} has an invalid port (1-65535)"
        return None
    if kind == "tcp":
        host, sep, port = target.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not _is_host(host):
            return f"{target!r} is not host:port with a port 1-65535, e.g. 'gateway-1.example.com:502' or '[2001:db8::5]:502'"
        return None
    if kind == "icmp":
        return None if _is_host(target) else f"{target!r} is not a hostname or IP address, e.g. 'gateway-1.example.com'"
    return None


def target_host(kind: str, target: str) -> str:
    """The host a (shape-checked) target makes a monitor connect to."""
    if kind == "http":
        return urlsplit(target).hostname or ""
    if kind == "tcp":
        host = target.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return target


async def _check_egress(egress: EgressPolicy, specs: Sequence[DeviceSpec], field_of: Callable[[int], str]) -> None:
    """Refuse targets the monitors would refuse to connect to (names resolved now; judged again per probe)."""
    hosts = {i: target_host(s.kind, s.target) for i, s in enumerate(specs) if s.kind != "push" and s.target}
    problems = await egress.registration_problems(hosts.values())
    for i, host in hosts.items():
        if host in problems:
            raise InputError(field_of(i), f"{problems[host]}; monitors only probe public internet addresses")


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.fullmatch(host))


def _check_spec(spec: DeviceSpec, prefix: str) -> None:
    name_problem = text_problem(spec.name or "", MAX_NAME, min_length=1)
    if name_problem or not spec.name.strip():
        raise InputError(f"{prefix}name", name_problem or f"must be 1-{MAX_NAME} characters and not blank")
    if spec.kind not in KINDS:
        raise InputError(f"{prefix}kind", f"{spec.kind!r} is not one of {', '.join(KINDS)}")
    problem = target_problem(spec.kind, spec.target)
    if problem:
        raise InputError(f"{prefix}target", problem)
    if not 5 <= spec.interval_s <= 86400:
        raise InputError(f"{prefix}interval_s", "must be between 5 and 86400 seconds")
    if not 100 <= spec.timeout_ms <= 60000:
        raise InputError(f"{prefix}timeout_ms", "must be between 100 and 60000 ms")
    if spec.timeout_ms > spec.interval_s * 1000:
        raise InputError(f"{prefix}timeout_ms", "must not exceed the interval (interval_s * 1000)")
    if spec.grace_s is not None and not 5 <= spec.grace_s <= 604800:
        raise InputError(f"{prefix}grace_s", "must be between 5 and 604800 seconds")
    if spec.kind == "push" and spec.grace_s is None:
        # Silence is judged against this; three missed intervals is a sane default.
        spec.grace_s = min(max(3 * spec.interval_s, 5), 604800)
    if spec.anomaly_factor is not None and not 0 < spec.anomaly_factor <= 100:
        raise InputError(f"{prefix}anomaly_factor", "must be > 0 and <= 100 (standard deviations)")
    if spec.anomaly_min_ms is not None and not 0 <= spec.anomaly_min_ms <= 60000:
        raise InputError(f"{prefix}anomaly_min_ms", "must be between 0 and 60000 ms")
    if spec.anomaly_checks is not None and not 1 <= spec.anomaly_checks <= 100:
        raise InputError(f"{prefix}anomaly_checks", "must be between 1 and 100")
    if spec.parent_id is not None and id_problem(spec.parent_id):
        raise InputError(f"{prefix}parent_id", id_problem(spec.parent_id))


@contextlib.asynccontextmanager
async def _connection(db: Executor) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


# --- writes -----------------------------------------------------------------------------------------


async def create_devices(
    db: Executor, tenant_id: int, specs: Sequence[DeviceSpec], *, field_prefix: str | None = "devices",
    egress: EgressPolicy = PUBLIC_ONLY, quotas: Quotas = DEFAULT_QUOTAS,
) -> list[CreatedDevice]:
    """Create many devices in one statement; all or nothing. Returns ids and ingest tokens (shown once).

    Errors name the offending item as `<field_prefix>[i].<field>` (just `<field>` when field_prefix is None).
    Targets must pass `egress` (the default allows public internet addresses only).
    `quotas` are the service defaults; the tenant's overrides apply on top (QuotaExceeded: field `devices`).
    """

    def item(i: int) -> str:
        return f"{field_prefix}[{i}]." if field_prefix is not None else ""

    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        _check_spec(spec, item(i))
        if spec.name in seen:
            raise InputError(f"{item(i)}name",
                             f"{spec.name!r} is also used by item {seen[spec.name]} of this request; names must be unique")
        seen[spec.name] = i
    await _check_egress(egress, specs, lambda i: f"{item(i)}target")
    tokens = [new_token(DEVICE_TOKEN_PREFIX) for _ in specs]
    async with _connection(db) as conn, conn.transaction():
        before = await locked_usage(conn, tenant_id)
        added_rate = sum(check_rate(s.kind, s.interval_s, s.enabled) for s in specs)
        admit(await effective(conn, tenant_id, quotas), before,
              Usage(before.devices + len(specs), before.checks_per_second + added_rate), "devices")
        parent_ids = sorted({s.parent_id for s in specs if s.parent_id is not None})
        if parent_ids:
            own = {r["id"] for r in await conn.fetch(SELECT_OWN_IDS, tenant_id, parent_ids)}
            for i, spec in enumerate(specs):
                if spec.parent_id is not None and spec.parent_id not in own:
                    raise InputError(f"{item(i)}parent_id", f"no device {spec.parent_id} in this tenant")
        existing = await conn.fetch(SELECT_EXISTING_NAMES, tenant_id, list(seen))
        if existing:
            name = existing[0]["name"]
            raise Conflict(f"{item(seen[name])}name", f"a device named {name!r} already exists")
        try:
            rows = await conn.fetch(
                INSERT_DEVICES, tenant_id,
                [s.name for s in specs], [s.kind for s in specs], [s.target for s in specs],
                [s.interval_s for s in specs], [s.timeout_ms for s in specs], [s.grace_s for s in specs],
                [s.parent_id for s in specs], [s.enabled for s in specs], [token_hash(t) for t in tokens],
                [s.anomaly_factor for s in specs], [s.anomaly_min_ms for s in specs],
                [s.anomaly_checks for s in specs],
            )
        except asyncpg.UniqueViolationError as exc:  # a concurrent create took a name
            raise Conflict("name", "a device with one of these names was created concurrently; retry") from exc
    ids = {row["name"]: row["id"] for row in rows}
    return [CreatedDevice(ids[s.name], s.name, token) for s, token in zip(specs, tokens, strict=True)]


async def update_device(
    db: Executor, tenant_id: int, device_id: int, changes: dict[str, Any], *, egress: EgressPolicy = PUBLIC_ONLY,
    quotas: Quotas = DEFAULT_QUOTAS,
) -> Device | None:
    """Apply `changes` (a subset of DeviceSpec fields); None when the tenant has no such device.

    A new target (or kind) must pass `egress`; a change that raises the tenant's check rate is admitted
    against its quota (QuotaExceeded)."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise InputError(sorted(unknown)[0], f"cannot be changed; editable fields: {', '.join(sorted(EDITABLE_FIELDS))}")
    if id_problem(device_id):
        return None  # no row can have this id
    async with _connection(db) as conn, conn.transaction():
        row = await conn.fetchrow(SELECT_DEVICE_FOR_UPDATE, tenant_id, device_id)
        if row is None:
            return None
        current = Device.from_record(row).spec()
        merged = {**_as_dict(current), **changes}
        if merged["kind"] != current.kind:
            if "target" not in changes:
                if merged["kind"] != "push":
                    raise InputError("target", f"give a target that fits kind {merged['kind']!r} when changing the kind")
                merged["target"] = None
            if current.kind == "push" and "grace_s" not in changes:
                merged["grace_s"] = None
        spec = DeviceSpec(**merged)
        _check_spec(spec, "")
        if "target" in changes or "kind" in changes:
            await _check_egress(egress, [spec], lambda _i: "target")
        added_rate = (check_rate(spec.kind, spec.interval_s, spec.enabled)
                      - check_rate(current.kind, current.interval_s, current.enabled))
        if added_rate > 0:
            before = await locked_usage(conn, tenant_id)
            field = next((f for f in ("interval_s", "enabled", "kind") if f in changes), "interval_s")
            admit(await effective(conn, tenant_id, quotas), before,
                  Usage(before.devices, before.checks_per_second + added_rate), field)
        if spec.parent_id is not None and "parent_id" in changes:
            if spec.parent_id == device_id:
                raise InputError("parent_id", "a device cannot be its own parent")
            if not await conn.fetch(SELECT_OWN_IDS, tenant_id, [spec.parent_id]):
                raise InputError("parent_id", f"no device {spec.parent_id} in this tenant")
            if await conn.fetchval(SELECT_IS_DESCENDANT, tenant_id, device_id, spec.parent_id):
                raise InputError("parent_id", f"device {spec.parent_id} depends on this device; that would be a cycle")
        try:
            await conn.execute(
                UPDATE_DEVICE, tenant_id, device_id, spec.name, spec.kind, spec.target, spec.interval_s,
                spec.timeout_ms, spec.grace_s, spec.parent_id, spec.enabled, spec.anomaly_factor,
                spec.anomaly_min_ms, spec.anomaly_checks,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("name", f"a device named {spec.name!r} already exists") from exc
        updated = await conn.fetchrow(SELECT_DEVICE, tenant_id, device_id)
    return Device.from_record(updated)


def _as_dict(spec: DeviceSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in fields(DeviceSpec)}


async def delete_device(db: Executor, tenant_id: int, device_id: int) -> bool:
    if id_problem(device_id):
        return False
    return await db.fetchval(DELETE_DEVICE, tenant_id, device_id) is not None


async def rotate_device_token(db: Executor, tenant_id: int, device_id: int) -> str | None:
    """New ingest token for the device (the old one stops working); None when there is no such device."""
    if id_problem(device_id):
        return None
    token = new_token(DEVICE_TOKEN_PREFIX)
    found = await db.fetchval(UPDATE_DEVICE_TOKEN, tenant_id, device_id, token_hash(token))
    return token if found is not None else None


async def notify_devices_changed(redis: Redis) -> None:
    """Tell the worker its device table is stale (call after every create/update/delete)."""
    await redis.incr(DEVICES_VERSION_KEY)


# --- reads ------------------------------------------------------------------------------------------


async def get_device(db: Executor, tenant_id: int, device_id: int) -> DeviceDetail | None:
    if id_problem(device_id):
        return None
    async with _connection(db) as conn:
        row = await conn.fetchrow(SELECT_DEVICE, tenant_id, device_id)
        if row is None:
            return None
        regions = [RegionState(**dict(r)) for r in await conn.fetch(SELECT_REGION_STATES, device_id)]
    return DeviceDetail(Device.from_record(row), regions)


async def device_by_token(db: Executor, token: str) -> IngestDevice | None:
    row = await db.fetchrow(SELECT_DEVICE_BY_TOKEN, token_hash(token))
    return IngestDevice(**dict(row)) if row else None


async def state_counts(db: Executor, tenant_id: int) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for row in await db.fetch(SELECT_STATE_COUNTS, tenant_id):
        counts[row["state"]] = row["n"]
    return counts


def _encode_cursor(sort: str, value: Any, device_id: int) -> str:
    raw = json.dumps([sort, value, device_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -INT8_MAX <= value <= INT8_MAX


# What a sort key in a cursor may be: a forged cursor gets a 422, never a database type error.
_CURSOR_VALUE_OK: dict[str, Any] = {
    "id": _is_int,
    "state": _is_int,
    "name": lambda v: isinstance(v, str) and text_problem(v, MAX_NAME) is None,
    "latency": lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool)),
}


def _decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        cursor_sort, value, device_id = json.loads(base64.urlsafe_b64decode(padded))
        if cursor_sort != sort or not _is_int(device_id) or not _CURSOR_VALUE_OK[sort](value):
            raise ValueError
    except (ValueError, TypeError) as exc:
        raise InputError("cursor", "not a cursor from a previous page with the same sort; start without it") from exc
    if sort == "latency" and value is None:
        value = float("inf")
    return value, device_id


async def list_devices(db: Executor, tenant_id: int, query: DeviceQuery) -> DevicePage:
    """One page of the tenant's devices, filtered and sorted; `total` counts all matches.

    The one device-list query: the tracker's GET /v1/devices and the dashboard's list page both call it.
    """
    if query.sort not in SORTS:
        raise InputError("sort", f"{query.sort!r} is not one of {', '.join(SORTS)}")
    if query.state is not None and query.state not in STATES:
        raise InputError("state", f"{query.state!r} is not one of {', '.join(STATES)}")
    if query.region_state is not None and query.region_state not in STATES:
        raise InputError("region_state", f"{query.region_state!r} is not one of {', '.join(STATES)}")
    if query.region_state is not None and query.region is None:
        raise InputError("region_state", "needs `region` (whose view of the device to filter on)")
    if query.kind is not None and query.kind not in KINDS:
        raise InputError("kind", f"{query.kind!r} is not one of {', '.join(KINDS)}")
    if not 1 <= query.limit <= MAX_PAGE:
        raise InputError("limit", f"must be between 1 and {MAX_PAGE}")
    if query.offset < 0:
        raise InputError("offset", "must be >= 0")
    if query.cursor and query.offset:
        raise InputError("offset", "use either cursor or offset, not both")
    if query.offset > INT8_MAX:
        raise InputError("offset", f"must be at most {INT8_MAX}")
    if query.parent_id is not None and id_problem(query.parent_id):
        raise InputError("parent_id", id_problem(query.parent_id))
    if query.text is not None and text_problem(query.text, MAX_SEARCH):
        raise InputError("q", text_problem(query.text, MAX_SEARCH))
    if query.region is not None and (len(query.region) > MAX_LABEL or not DNS_LABEL.fullmatch(query.region)):
        raise InputError("region", control_character_problem(query.region) or "must be a region name (one DNS label)")

    params: list[Any] = [tenant_id]
    where = ["d.tenant_id = $1"]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if query.state:
        where.append(f"d.state = {param(query.state)}")
    if query.kind:
        where.append(f"d.kind = {param(query.kind)}")
    if query.parent_id is not None:
        where.append(f"d.parent_id = {param(query.parent_id)}")
    if query.text:
        pattern = "%" + query.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        p = param(pattern)
        where.append(f"(d.name ILIKE {p} OR coalesce(d.target, '') ILIKE {p})")
    if query.region:
        region_filter = f"r.device_id = d.id AND r.region = {param(query.region)}"
        if query.region_state:
            region_filter += f" AND r.state = {param(query.region_state)}"
        where.append(f"EXISTS (SELECT 1 FROM device_region_state r WHERE {region_filter})")

    async with _connection(db) as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM devices d WHERE {' AND '.join(where)}", *params)
        sort_expr = SORT_EXPRESSIONS[query.sort]
        if query.cursor:
            value, after_id = _decode_cursor(query.cursor, query.sort)
            op = "<" if query.descending else ">"
            where.append(f"({sort_expr}, d.id) {op} ({param(value)}, {param(after_id)})")
        direction = "DESC" if query.descending else "ASC"
        # The page's ids first (sorting and skipping touch only ids and sort keys), then full rows, with
        # the per-device latency subquery, for those ids alone; one statement, so one snapshot.
        page_ids = (
            f"SELECT d.id, {sort_expr} AS sort_key FROM devices d {SORT_JOINS.get(query.sort, '')} "
            f"WHERE {' AND '.join(where)} "
            f"ORDER BY {sort_expr} {direction}, d.id {direction} "
            f"LIMIT {param(query.limit + 1)} OFFSET {param(query.offset)}"
        )
        sql = (
            f"SELECT {DEVICE_COLUMNS}, {LATENCY_EXPR} AS latency_ms, page.sort_key "
            f"FROM ({page_ids}) page JOIN devices d ON d.id = page.id "
            f"WHERE d.tenant_id = $1 "
            f"ORDER BY page.sort_key {direction}, page.id {direction}"
        )
        rows = await conn.fetch(sql, *params)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    items = [Device.from_record({k: v for k, v in r.items() if k != "sort_key"}) for r in rows]
    next_cursor = None
    if more and rows:
        last_key = rows[-1]["sort_key"]
        if isinstance(last_key, float) and last_key == float("inf"):
            last_key = None
        next_cursor = _encode_cursor(query.sort, last_key, rows[-1]["id"])
    return DevicePage(items, total, next_cursor)


def _check_ids(**ids: int | None) -> None:
    for name, value in ids.items():
        if value is not None and id_problem(value):
            raise InputError(name, id_problem(value))


async def list_incidents(
    db: Executor, tenant_id: int, *, device_id: int | None = None, open_only: bool = False,
    before_id: int | None = None, limit: int = 50,
) -> list[Incident]:
    """Newest first; page with `before_id` = the last id of the previous page."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError("limit", f"must be between 1 and {MAX_PAGE}")
    _check_ids(device_id=device_id, before=before_id)
    rows = await db.fetch(SELECT_INCIDENTS, tenant_id, device_id, open_only, before_id, limit)
    return [Incident(**dict(r)) for r in rows]


async def list_webhook_deliveries(
    db: Executor, tenant_id: int, *, status: str | None = None, before_id: int | None = None, limit: int = 50
) -> list[WebhookDelivery]:
    if not 1 <= limit <= MAX_PAGE:
        raise InputError("limit", f"must be between 1 and {MAX_PAGE}")
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise InputError("status", "must be pending, delivered or failed")
    _check_ids(before=before_id)
    rows = await db.fetch(SELECT_DELIVERIES, tenant_id, before_id, status, limit)
    return [WebhookDelivery(**dict(r)) for r in rows]


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    healthy: bool
    reason: str | None
    last_heartbeat_at: datetime | None


SELECT_REGIONS = "SELECT name, healthy, reason, last_heartbeat_at FROM regions ORDER BY name"


async def region_names(db: Executor) -> list[str]:
    return [r["name"] for r in await db.fetch(SELECT_REGIONS)]


async def monitor_heartbeats(redis: Redis) -> dict[str, list[float]]:
    """region -> the last heartbeat (unix time) of each of its monitor processes, newest first.

    Every monitor process is one member of a sorted set (the worker drops members idle for an hour),
    so this reads a few dozen entries however many devices there are.
    """
    beats: dict[str, list[float]] = {}
    for member, score in await redis.zrange(MONITOR_HEARTBEATS_KEY, 0, -1, withscores=True):
        name = member.decode() if isinstance(member, bytes) else member
        beats.setdefault(region_of_member(name), []).append(float(score))
    return {region: sorted(times, reverse=True) for region, times in beats.items()}


async def list_regions(db: Executor, redis: Redis) -> list[Region]:
    """Monitor regions as the worker sees them (unhealthy regions are left out of every quorum), each
    with its newest monitor heartbeat.

    The worker writes a region's row only when its health changes; heartbeats arrive every few seconds
    from every monitor and live in Redis, so the newest is read from there (no database write per
    heartbeat). Without Redis the row's value stands: the heartbeat the worker saw at the last change.
    """
    rows = [Region(**dict(r)) for r in await db.fetch(SELECT_REGIONS)]
    try:
        beats = await monitor_heartbeats(redis)
    except (RedisError, OSError):
        return rows
    out = []
    for row in rows:
        newest = beats.get(row.name, [None])[0]
        if newest is not None:
            beat = datetime.fromtimestamp(newest, UTC)
            if row.last_heartbeat_at is None or beat > row.last_heartbeat_at:
                row = replace(row, last_heartbeat_at=beat)
        out.append(row)
    return out
