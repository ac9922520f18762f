"""Channel repository: a tenant's notification channels (kind, sealed config, events, routing rule) and the
log of each channel's deliveries. Every query filters on the tenant id; configs are validated by the kind's
model and the egress policy before they are sealed (`iot.sealed`) and stored."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.errors import Conflict, InputError
from iot.inputs import MAX_NAME, tags_problem, text_problem
from iot.notify import CHANNELS, EVENT_KINDS
from iot.repo._db import Executor, check_ids, check_page_limit
from iot.sealed import SealError, SecretBox

MAX_CHANNELS = 50  # per tenant
MAX_ROUTE_DEVICES = 1000
ROUTES = ("all", "tags", "devices")
DEFAULT_EVENTS = ("down", "up", "degraded", "silent")

COLUMNS = """id, name, kind, config_shown, events, route, route_tags, route_device_ids, enabled, created_at,
             updated_at"""
SELECT_CHANNELS = f"SELECT {COLUMNS} FROM channels WHERE tenant_id = $1 ORDER BY name, id"
SELECT_CHANNEL = f"SELECT {COLUMNS} FROM channels WHERE tenant_id = $1 AND id = $2"
SELECT_SEALED = "SELECT kind, config_sealed FROM channels WHERE tenant_id = $1 AND id = $2"
COUNT_CHANNELS = "SELECT count(*) FROM channels WHERE tenant_id = $1"
INSERT_CHANNEL = f"""
INSERT INTO channels (tenant_id, name, kind, config_sealed, config_shown, events, route, route_tags,
                      route_device_ids, enabled)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)
RETURNING {COLUMNS}
"""
UPDATE_CHANNEL = f"""
UPDATE channels SET name = $3, kind = $4, config_sealed = $5, config_shown = $6::jsonb, events = $7, route = $8,
    route_tags = $9, route_device_ids = $10, enabled = $11, updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING {COLUMNS}
"""
DELETE_CHANNEL = "DELETE FROM channels WHERE tenant_id = $1 AND id = $2"
# Which of the given ids are devices of this tenant (routing may only name its own devices).
OWN_DEVICES = "SELECT id FROM devices WHERE tenant_id = $1 AND id = ANY($2::bigint[])"
SELECT_CHANNEL_DELIVERIES = """
SELECT id, event_id, event_type, status, attempts, next_attempt_at, last_status_code, last_error, created_at,
       delivered_at
FROM webhook_deliveries
WHERE tenant_id = $1 AND channel_id = $2 AND ($3::bigint IS NULL OR id < $3)
ORDER BY id DESC
LIMIT $4
"""


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """What a tenant sends to create or replace a channel; config None keeps the stored one (edits)."""

    name: str
    kind: str
    config: dict[str, Any] | None
    events: list[str] = field(default_factory=lambda: list(DEFAULT_EVENTS))
    route: str = "all"
    route_tags: list[str] = field(default_factory=list)
    route_device_ids: list[int] = field(default_factory=list)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class StoredChannel:
    id: int
    name: str
    kind: str
    config_shown: dict[str, Any]
    events: list[str]
    route: str
    route_tags: list[str]
    route_device_ids: list[int]
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> StoredChannel:
        data = dict(row)
        shown = data["config_shown"]
        data["config_shown"] = json.loads(shown) if isinstance(shown, str) else shown
        data["events"], data["route_tags"] = list(data["events"]), list(data["route_tags"])
        data["route_device_ids"] = list(data["route_device_ids"])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ChannelDelivery:
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


def _config_errors(exc: ValidationError) -> InputError:
    first = exc.errors()[0]
    path = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "is not a field of this kind"
    return InputError(f"config.{path}" if path else "config", message)


async def _checked(db: Executor, box: SecretBox, egress: EgressPolicy, tenant_id: int, spec: ChannelSpec,
                   stored: tuple[str, str] | None) -> tuple[str, dict[str, Any]]:
    """(sealed config, shown config) after every check; InputError naming the field otherwise."""
    problem = text_problem(spec.name, MAX_NAME, min_length=1)
    if problem:
        raise InputError("name", problem)
    channel = CHANNELS.get(spec.kind)
    if channel is None:
        raise InputError("kind", f"must be one of {', '.join(CHANNELS)}")
    unknown = [e for e in spec.events if e not in EVENT_KINDS]
    if unknown or not spec.events:
        raise InputError("events", f"choose at least one of {', '.join(EVENT_KINDS)}")
    if spec.route not in ROUTES:
        raise InputError("route", "must be all, tags or devices")
    if spec.route == "tags":
        tags, problem_at = tags_problem(spec.route_tags)
        if problem_at or not tags:
            raise InputError("route_tags", problem_at[1] if problem_at else "give at least one tag for route 'tags'")
    if spec.route == "devices":
        if not spec.route_device_ids or len(spec.route_device_ids) > MAX_ROUTE_DEVICES:
            raise InputError("route_device_ids", f"give 1 to {MAX_ROUTE_DEVICES} device ids for route 'devices'")
        check_ids(route_device_ids=max(spec.route_device_ids))
        check_ids(route_device_ids=min(spec.route_device_ids))
        own = {r["id"] for r in await db.fetch(OWN_DEVICES, tenant_id, spec.route_device_ids)}
        missing = [i for i in spec.route_device_ids if i not in own]
        if missing:
            raise InputError("route_device_ids", f"no device {missing[0]} in this tenant; use ids from GET /v1/devices")
    if spec.config is None:
        if stored is None or stored[0] != spec.kind:
            raise InputError("config", "required when creating a channel or changing its kind")
        try:
            config = channel.parse(json.loads(box.open(stored[1])))
        except (SealError, ValidationError, ValueError):
            raise InputError("config", "the stored settings cannot be opened; send the config again") from None
    else:
        try:
            config = channel.parse(spec.config)
        except ValidationError as exc:
            raise _config_errors(exc) from None
    problem_at = await channel.problem(config, egress)
    if problem_at:
        raise InputError(*problem_at)
    return box.seal(config.model_dump_json()), channel.shown(config)


def _route_values(spec: ChannelSpec) -> tuple[list[str], list[int]]:
    tags = tags_problem(spec.route_tags)[0] if spec.route == "tags" else []
    return tags, (list(dict.fromkeys(spec.route_device_ids)) if spec.route == "devices" else [])


async def create_channel(db: Executor, box: SecretBox, tenant_id: int, spec: ChannelSpec, *,
                         egress: EgressPolicy = PUBLIC_ONLY) -> StoredChannel:
    if await db.fetchval(COUNT_CHANNELS, tenant_id) >= MAX_CHANNELS:
        raise InputError("channels", f"a tenant has at most {MAX_CHANNELS} channels; delete one first")
    sealed, shown = await _checked(db, box, egress, tenant_id, spec, None)
    tags, device_ids = _route_values(spec)
    try:
        row = await db.fetchrow(INSERT_CHANNEL, tenant_id, spec.name, spec.kind, sealed, shown,
                                list(dict.fromkeys(spec.events)), spec.route, tags, device_ids, spec.enabled)
    except asyncpg.UniqueViolationError:
        raise Conflict("name", f"a channel named {spec.name!r} exists; choose another name") from None
    return StoredChannel.from_record(row)


async def update_channel(db: Executor, box: SecretBox, tenant_id: int, channel_id: int, spec: ChannelSpec, *,
                         egress: EgressPolicy = PUBLIC_ONLY) -> StoredChannel | None:
    """Replace a channel's settings (config None: keep the stored config); None when it is not the tenant's."""
    check_ids(channel_id=channel_id)
    stored = await db.fetchrow(SELECT_SEALED, tenant_id, channel_id)
    if stored is None:
        return None
    sealed, shown = await _checked(db, box, egress, tenant_id, spec, (stored["kind"], stored["config_sealed"]))
    tags, device_ids = _route_values(spec)
    try:
        row = await db.fetchrow(UPDATE_CHANNEL, tenant_id, channel_id, spec.name, spec.kind, sealed, shown,
                                list(dict.fromkeys(spec.events)), spec.route, tags, device_ids, spec.enabled)
    except asyncpg.UniqueViolationError:
        raise Conflict("name", f"a channel named {spec.name!r} exists; choose another name") from None
    return StoredChannel.from_record(row) if row else None


async def list_channels(db: Executor, tenant_id: int) -> list[StoredChannel]:
    return [StoredChannel.from_record(r) for r in await db.fetch(SELECT_CHANNELS, tenant_id)]


async def get_channel(db: Executor, tenant_id: int, channel_id: int) -> StoredChannel | None:
    check_ids(channel_id=channel_id)
    row = await db.fetchrow(SELECT_CHANNEL, tenant_id, channel_id)
    return StoredChannel.from_record(row) if row else None


async def delete_channel(db: Executor, tenant_id: int, channel_id: int) -> bool:
    check_ids(channel_id=channel_id)
    return await db.execute(DELETE_CHANNEL, tenant_id, channel_id) == "DELETE 1"


async def open_channel(db: Executor, box: SecretBox, tenant_id: int, channel_id: int) -> tuple[str, Any] | None:
    """(kind, validated config) of the tenant's channel, for a test send; None when it is not the tenant's."""
    check_ids(channel_id=channel_id)
    row = await db.fetchrow(SELECT_SEALED, tenant_id, channel_id)
    if row is None:
        return None
    channel = CHANNELS.get(row["kind"])
    if channel is None:
        raise InputError("kind", "this server no longer offers this channel kind; change the channel's kind")
    try:
        return row["kind"], channel.parse(json.loads(box.open(row["config_sealed"])))
    except (SealError, ValidationError, ValueError):
        raise InputError("config", "the stored settings cannot be opened; save the channel again") from None


async def list_channel_deliveries(db: Executor, tenant_id: int, channel_id: int, *, before_id: int | None = None,
                                  limit: int = 50) -> list[ChannelDelivery]:
    check_page_limit(limit)
    check_ids(channel_id=channel_id, before=before_id)
    rows = await db.fetch(SELECT_CHANNEL_DELIVERIES, tenant_id, channel_id, before_id, limit)
    return [ChannelDelivery(**dict(r)) for r in rows]
