"""Device repository: specs and their validation, create (bulk), update, delete, ingest tokens, one
device's detail, state counts.

Used by the tracker API and the dashboard (the device list is `repo.device_list`). Every function takes
the tenant id, and every query filters on it, so one tenant can never reach another tenant's rows: a
foreign id behaves exactly like a missing one. Callers that change devices must call
`notify_devices_changed` so the worker reloads its table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from iot.checks import KIND_NAMES
from iot.checks import KINDS as CHECK_KINDS
from iot.checks.base import OptionsProblem
from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.errors import Conflict, InputError
from iot.inputs import (
    MAX_NAME,
    id_problem,
    tags_problem,
    text_problem,
)
from iot.protocol import DEVICES_VERSION_KEY
from iot.quotas import DEFAULT_QUOTAS, Quotas, Usage, admit, check_rate, effective, locked_usage
from iot.repo import check_secrets
from iot.repo._db import Executor, check_ids, connection
from iot.sealed import SecretBox
from iot.tokens import DEVICE_TOKEN_PREFIX, new_token, token_hash

KINDS = KIND_NAMES  # iot.checks.KINDS is the one list
STATES = ("up", "down", "degraded", "unknown")

DEVICE_COLUMNS = (
    "d.id, d.tenant_id, d.name, d.kind, d.target, d.interval_s, d.timeout_ms, d.grace_s, d.parent_id, "
    "d.enabled, d.anomaly_factor, d.anomaly_min_ms, d.anomaly_checks, d.state, d.state_since, "
    "d.last_seen_at, d.created_at, d.updated_at, d.tags, d.options, d.retries"
)
# Mean of the last successful latency over the regions (NULL when no region has one).
LATENCY_EXPR = (
    "(SELECT avg(r.last_latency_ms) FROM device_region_state r WHERE r.device_id = d.id AND r.last_ok)"
)

INSERT_DEVICES = """
INSERT INTO devices (tenant_id, name, kind, target, interval_s, timeout_ms, grace_s, parent_id, enabled,
                     token_hash, anomaly_factor, anomaly_min_ms, anomaly_checks, tags, options, retries)
SELECT $1, n, k, t, i, tm, g, p, e, h, af, am, ac, string_to_array(tg, ','), o::jsonb, r
FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::int[], $8::bigint[],
            $9::bool[], $10::text[], $11::real[], $12::real[], $13::int[], $14::text[], $15::text[], $16::int[])
     AS x(n, k, t, i, tm, g, p, e, h, af, am, ac, tg, o, r)
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
       tags = $14, options = $15, retries = $16, updated_at = now()
WHERE tenant_id = $1 AND id = $2
"""
DELETE_DEVICE = "DELETE FROM devices WHERE tenant_id = $1 AND id = $2 RETURNING id"
UPDATE_DEVICE_TOKEN = "UPDATE devices SET token_hash = $3 WHERE tenant_id = $1 AND id = $2 RETURNING id"
SELECT_DEVICE_BY_TOKEN = """
SELECT d.id, d.tenant_id, d.kind, d.enabled, q.points_per_second
FROM devices d LEFT JOIN tenant_quotas q ON q.tenant_id = d.tenant_id
WHERE d.token_hash = $1
"""
# The same device, named by a tenant API key with the `ingest` scope instead of by its token.
SELECT_INGEST_DEVICE = """
SELECT d.id, d.tenant_id, d.kind, d.enabled, q.points_per_second
FROM devices d LEFT JOIN tenant_quotas q ON q.tenant_id = d.tenant_id
WHERE d.tenant_id = $1 AND d.id = $2
"""
SELECT_STATE_COUNTS = "SELECT state, count(*) AS n FROM devices WHERE tenant_id = $1 GROUP BY state"


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
    tags: list[str] = field(default_factory=list)  # normalised by _check_spec
    options: dict[str, Any] = field(default_factory=dict)  # checked and normalised by the kind's model
    retries: int | None = None  # failed checks in a row before a region counts as failing (None: default)


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
    tags: list[str]
    options: dict[str, Any]
    retries: int | None
    latency_ms: float | None = None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Device:
        values = dict(row)
        latency = values.pop("latency_ms", None)
        values["options"] = check_secrets.masked(values["options"])  # sealed header values never leave
        return cls(**values, latency_ms=latency)

    def spec(self) -> DeviceSpec:
        spec = DeviceSpec(**{name: getattr(self, name) for name in EDITABLE_FIELDS})
        spec.tags = list(spec.tags)
        spec.options = dict(spec.options)
        return spec


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


# --- validation -------------------------------------------------------------------------------------


def target_problem(kind: str, target: str | None) -> str | None:
    """Why `target` does not fit a device of `kind`, or None (the kind's own rule, `iot.checks`)."""
    check_kind = CHECK_KINDS.get(kind)
    return check_kind.target_problem(target) if check_kind else f"{kind!r} is not one of {', '.join(KINDS)}"


def target_host(kind: str, target: str) -> str:
    """The host a (shape-checked) target makes a monitor connect to ('' for kinds that connect to none)."""
    return CHECK_KINDS[kind].host(target)


async def _check_egress(egress: EgressPolicy, specs: Sequence[DeviceSpec], prefix_of: Callable[[int], str]) -> None:
    """Refuse targets (and resolvers) the monitors would refuse to connect to (names resolved now; judged
    again per probe). The field is `target`, or `options.resolver` for a host that came from the options."""
    hosts: dict[tuple[int, str], str] = {}
    for i, spec in enumerate(specs):
        kind = CHECK_KINDS[spec.kind]
        for host in kind.egress_hosts(spec.target, spec.options):
            if host:
                from_target = bool(spec.target) and host == kind.host(spec.target)
                hosts[(i, "target" if from_target else "options.resolver")] = host
    problems = await egress.registration_problems(set(hosts.values()))
    for (i, name), host in hosts.items():
        if host in problems:
            raise InputError(f"{prefix_of(i)}{name}", f"{problems[host]}; monitors only probe public internet addresses")


def _check_spec(spec: DeviceSpec, prefix: str, stored_options: dict[str, Any] | None = None,
                box: SecretBox | None = None) -> None:
    """Check and normalise `spec` in place; its options end up ready to store (secret values sealed,
    masked ones replaced by `stored_options`' sealed values)."""
    name_problem = text_problem(spec.name or "", MAX_NAME, min_length=1)
    if name_problem or not spec.name.strip():
        raise InputError(f"{prefix}name", name_problem or f"must be 1-{MAX_NAME} characters and not blank")
    if spec.kind not in KINDS:
        raise InputError(f"{prefix}kind", f"{spec.kind!r} is not one of {', '.join(KINDS)}")
    problem = target_problem(spec.kind, spec.target)
    if problem:
        raise InputError(f"{prefix}target", problem)
    try:
        raw, kept = check_secrets.split_kept(spec.options) if isinstance(spec.options, dict) \
            else (spec.options, {})
        spec.options = CHECK_KINDS[spec.kind].options(raw)
        spec.options = check_secrets.seal(spec.options, kept, stored_options or {}, box, f"{prefix}options")
    except OptionsProblem as exc:
        field_name = "options" if exc.field == "options" else f"options.{exc.field}"
        raise InputError(f"{prefix}{field_name}", f"{exc.reason} (kind {spec.kind!r})") from None
    if spec.retries is not None and (isinstance(spec.retries, bool) or not 1 <= spec.retries <= 20):
        raise InputError(f"{prefix}retries", "must be between 1 and 20 failed checks in a row (omit for the default)")
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
    if not isinstance(spec.tags, list):
        raise InputError(f"{prefix}tags", "must be a list of tags")
    tags, tag_problem = tags_problem(spec.tags)
    if tag_problem:
        index, reason = tag_problem
        raise InputError(f"{prefix}tags" + (f"[{index}]" if index is not None else ""), reason)
    spec.tags = tags


# --- writes -----------------------------------------------------------------------------------------


async def create_devices(
    db: Executor, tenant_id: int, specs: Sequence[DeviceSpec], *, field_prefix: str | None = "devices",
    egress: EgressPolicy = PUBLIC_ONLY, quotas: Quotas = DEFAULT_QUOTAS, box: SecretBox | None = None,
) -> list[CreatedDevice]:
    """Create many devices in one statement; all or nothing. Returns ids and ingest tokens (shown once).

    Errors name the offending item as `<field_prefix>[i].<field>` (just `<field>` when field_prefix is None).
    Targets must pass `egress` (the default allows public internet addresses only).
    `quotas` are the service defaults; the tenant's overrides apply on top (QuotaExceeded: field `devices`).
    `box` (SECRETS_KEY) seals secret option values (http headers); needed only when a device has some.
    """

    def item(i: int) -> str:
        return f"{field_prefix}[{i}]." if field_prefix is not None else ""

    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        _check_spec(spec, item(i), box=box)
        if spec.name in seen:
            raise InputError(f"{item(i)}name",
                             f"{spec.name!r} is also used by item {seen[spec.name]} of this request; names must be unique")
        seen[spec.name] = i
    await _check_egress(egress, specs, item)
    tokens = [new_token(DEVICE_TOKEN_PREFIX) for _ in specs]
    async with connection(db) as conn, conn.transaction():
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
                [",".join(s.tags) for s in specs],  # "," is not a tag character; split again in SQL
                [json.dumps(s.options) for s in specs], [s.retries for s in specs],
            )
        except asyncpg.UniqueViolationError as exc:  # a concurrent create took a name
            raise Conflict("name", "a device with one of these names was created concurrently; retry") from exc
    ids = {row["name"]: row["id"] for row in rows}
    return [CreatedDevice(ids[s.name], s.name, token) for s, token in zip(specs, tokens, strict=True)]


async def update_device(
    db: Executor, tenant_id: int, device_id: int, changes: dict[str, Any], *, egress: EgressPolicy = PUBLIC_ONLY,
    quotas: Quotas = DEFAULT_QUOTAS, box: SecretBox | None = None,
) -> Device | None:
    """Apply `changes` (a subset of DeviceSpec fields); None when the tenant has no such device.

    A new target (or kind) must pass `egress`; a change that raises the tenant's check rate is admitted
    against its quota (QuotaExceeded)."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise InputError(sorted(unknown)[0], f"cannot be changed; editable fields: {', '.join(sorted(EDITABLE_FIELDS))}")
    if id_problem(device_id):
        return None  # no row can have this id
    async with connection(db) as conn, conn.transaction():
        row = await conn.fetchrow(SELECT_DEVICE_FOR_UPDATE, tenant_id, device_id)
        if row is None:
            return None
        stored_options = dict(row["options"])  # with the sealed values, unlike Device.options
        current = Device.from_record(row).spec()
        merged = {**_as_dict(current), **changes}
        if merged["kind"] != current.kind:
            if "options" not in changes:
                merged["options"] = {}  # one kind's options mean nothing to another
            if "target" not in changes:
                if merged["kind"] != "push":
                    raise InputError("target", f"give a target that fits kind {merged['kind']!r} when changing the kind")
                merged["target"] = None
            if current.kind == "push" and "grace_s" not in changes:
                merged["grace_s"] = None
        spec = DeviceSpec(**merged)
        _check_spec(spec, "", stored_options if spec.kind == current.kind else None, box)
        if "target" in changes or "kind" in changes or "options" in changes:
            await _check_egress(egress, [spec], lambda _i: "")
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
                spec.anomaly_min_ms, spec.anomaly_checks, spec.tags, spec.options, spec.retries,
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
    async with connection(db) as conn:
        row = await conn.fetchrow(SELECT_DEVICE, tenant_id, device_id)
        if row is None:
            return None
        regions = [RegionState(**dict(r)) for r in await conn.fetch(SELECT_REGION_STATES, device_id)]
    return DeviceDetail(Device.from_record(row), regions)


async def device_by_token(db: Executor, token: str) -> IngestDevice | None:
    row = await db.fetchrow(SELECT_DEVICE_BY_TOKEN, token_hash(token))
    return IngestDevice(**dict(row)) if row else None


async def ingest_device(db: Executor, tenant_id: int, device_id: int) -> IngestDevice | None:
    """The tenant's device `device_id` as ingest sees it; None for a missing or another tenant's device."""
    check_ids(device_id=device_id)
    row = await db.fetchrow(SELECT_INGEST_DEVICE, tenant_id, device_id)
    return IngestDevice(**dict(row)) if row else None


async def state_counts(db: Executor, tenant_id: int) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for row in await db.fetch(SELECT_STATE_COUNTS, tenant_id):
        counts[row["state"]] = row["n"]
    return counts
