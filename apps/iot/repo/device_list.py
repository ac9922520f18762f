"""The device list: filters, sorts and keyset cursors over one tenant's devices (API and dashboard)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

from iot.errors import InputError
from iot.inputs import (
    DNS_LABEL,
    INT8_MAX,
    MAX_LABEL,
    MAX_NAME,
    MAX_SEARCH,
    control_character_problem,
    id_problem,
    tags_problem,
    text_problem,
)
from iot.repo._db import Executor, check_page_limit, connection
from iot.repo.devices import DEVICE_COLUMNS, KINDS, LATENCY_EXPR, STATES, Device

SORTS = ("id", "name", "state", "latency")

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
    "state": "array_position(ARRAY['down','degraded','unknown','up'], d.state)",  # the worst first
    # NULL (never measured) sorts as slowest, and stays comparable for the keyset cursor.
    "latency": "coalesce(lat.latency_ms, 'Infinity'::float8)",
}
# Joins a sort expression needs (the page-id query of `list_devices` only).
SORT_JOINS = {"latency": f"LEFT JOIN ({TENANT_LATENCY}) lat ON lat.device_id = d.id"}


@dataclass(slots=True)
class DeviceQuery:
    state: str | None = None
    kind: str | None = None
    region: str | None = None
    region_state: str | None = None  # with `region`: that region's view of the device
    text: str | None = None  # substring of name or target
    name: str | None = None  # substring of the name alone (the parent picker)
    parent_id: int | None = None
    tags: list[str] | None = None  # devices having all of these
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


def check_filters(query: DeviceQuery) -> None:
    """Refuse filter values that no device can match (InputError naming the parameter); normalises tags."""
    if query.state is not None and query.state not in STATES:
        raise InputError("state", f"{query.state!r} is not one of {', '.join(STATES)}")
    if query.region_state is not None and query.region_state not in STATES:
        raise InputError("region_state", f"{query.region_state!r} is not one of {', '.join(STATES)}")
    if query.region_state is not None and query.region is None:
        raise InputError("region_state", "needs `region` (whose view of the device to filter on)")
    if query.kind is not None and query.kind not in KINDS:
        raise InputError("kind", f"{query.kind!r} is not one of {', '.join(KINDS)}")
    if query.parent_id is not None and id_problem(query.parent_id):
        raise InputError("parent_id", id_problem(query.parent_id))
    if query.text is not None and text_problem(query.text, MAX_SEARCH):
        raise InputError("q", text_problem(query.text, MAX_SEARCH))
    if query.name is not None and text_problem(query.name, MAX_SEARCH):
        raise InputError("name", text_problem(query.name, MAX_SEARCH))
    if query.region is not None and (len(query.region) > MAX_LABEL or not DNS_LABEL.fullmatch(query.region)):
        raise InputError("region", control_character_problem(query.region) or "must be a region name (one DNS label)")
    if query.tags:
        tags, tag_problem = tags_problem(query.tags)
        if tag_problem:
            raise InputError("tag", tag_problem[1])
        query.tags = tags


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def filter_sql(tenant_id: int, query: DeviceQuery) -> tuple[list[str], list[Any]]:
    """WHERE terms over `devices d` (the tenant's rows only: `d.tenant_id = $1` first) and their parameters.

    The one filter language: the list, the CSV export and bulk actions select devices with it."""
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
    if query.tags:
        where.append(f"d.tags @> {param(query.tags)}::text[]")  # the GIN index of migration 0006
    if query.text:
        p = param(_like(query.text))
        where.append(f"(d.name ILIKE {p} OR coalesce(d.target, '') ILIKE {p})")
    if query.name:
        where.append(f"d.name ILIKE {param(_like(query.name))}")
    if query.region:
        region_filter = f"r.device_id = d.id AND r.region = {param(query.region)}"
        if query.region_state:
            region_filter += f" AND r.state = {param(query.region_state)}"
        where.append(f"EXISTS (SELECT 1 FROM device_region_state r WHERE {region_filter})")
    return where, params


async def list_devices(db: Executor, tenant_id: int, query: DeviceQuery) -> DevicePage:
    """One page of the tenant's devices, filtered and sorted; `total` counts all matches.

    The one device-list query: the tracker's GET /v1/devices and the dashboard's list page both call it.
    """
    if query.sort not in SORTS:
        raise InputError("sort", f"{query.sort!r} is not one of {', '.join(SORTS)}")
    check_page_limit(query.limit)
    if query.offset < 0:
        raise InputError("offset", "must be >= 0")
    if query.cursor and query.offset:
        raise InputError("offset", "use either cursor or offset, not both")
    if query.offset > INT8_MAX:
        raise InputError("offset", f"must be at most {INT8_MAX}")
    check_filters(query)
    where, params = filter_sql(tenant_id, query)

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    async with connection(db) as conn:
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
