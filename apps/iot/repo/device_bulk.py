"""Bulk actions on a selection of one tenant's devices: pause, resume, tag, untag, set interval, delete.

The selection is the device list's filter language (`device_list.filter_sql`), optionally narrowed to
chosen ids; it is bounded (MAX_BULK) and locked, and the action runs in the same transaction, so a bulk
action changes every selected device or none. Raising the check rate (resume, a shorter interval) is
admitted against the tenant's quota like a single edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iot.errors import InputError
from iot.inputs import MAX_TAGS, id_problem, tags_problem
from iot.quotas import DEFAULT_QUOTAS, Quotas, Usage, admit, check_rate, effective, locked_usage
from iot.repo._db import Executor, connection
from iot.repo.device_list import DeviceQuery, check_filters, filter_sql

ACTIONS = ("pause", "resume", "tag_add", "tag_remove", "set_interval", "delete")
MAX_BULK = 10_000  # devices one action may touch (as many as one bulk create)

UPDATE_ENABLED = """
UPDATE devices SET enabled = $3, updated_at = now()
WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND enabled <> $3
"""
UPDATE_INTERVAL = """
UPDATE devices SET interval_s = $3, updated_at = now()
WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND interval_s <> $3
"""
# One statement for all rows; "," is not a tag character (as in devices.INSERT_DEVICES).
UPDATE_TAGS = """
UPDATE devices d SET tags = string_to_array(x.tg, ','), updated_at = now()
FROM unnest($2::bigint[], $3::text[]) AS x(id, tg)
WHERE d.tenant_id = $1 AND d.id = x.id
"""
DELETE_SELECTED = "DELETE FROM devices WHERE tenant_id = $1 AND id = ANY($2::bigint[])"


@dataclass(frozen=True, slots=True)
class BulkResult:
    action: str
    matched: int  # devices selected
    changed: int  # of those, devices the action changed (pausing a paused device changes nothing)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])  # asyncpg's "UPDATE 12" / "DELETE 3"


def _check_arguments(action: str, tags: Sequence[str] | None, interval_s: int | None) -> list[str]:
    if action not in ACTIONS:
        raise InputError("action", f"{action!r} is not one of {', '.join(ACTIONS)}")
    if action in ("tag_add", "tag_remove"):
        if not tags:
            raise InputError("tags", f"{action} needs at least one tag, e.g. [\"env:prod\"]")
        normalised, problem = tags_problem(list(tags))
        if problem:
            index, reason = problem
            raise InputError("tags" + (f"[{index}]" if index is not None else ""), reason)
        return normalised
    if action == "set_interval" and (interval_s is None or isinstance(interval_s, bool)
                                     or not isinstance(interval_s, int) or not 5 <= interval_s <= 86400):
        raise InputError("interval_s", "set_interval needs interval_s between 5 and 86400 seconds")
    return []


def _selection(tenant_id: int, query: DeviceQuery, ids: Sequence[int] | None) -> tuple[list[str], list[Any]]:
    check_filters(query)
    where, params = filter_sql(tenant_id, query)
    if ids is not None:
        if len(ids) > MAX_BULK:
            raise InputError("ids", f"{len(ids)} ids, at most {MAX_BULK} per action; split the list")
        bad = next((i for i, v in enumerate(ids) if id_problem(v)), None)
        if bad is not None:
            raise InputError(f"ids[{bad}]", id_problem(ids[bad]) or "")
        params.append(list(ids))
        where.append(f"d.id = ANY(${len(params)}::bigint[])")
    return where, params


async def count_selected(db: Executor, tenant_id: int, query: DeviceQuery, ids: Sequence[int] | None = None) -> int:
    """How many devices `bulk_action` with this selection would act on now (a confirmation names it)."""
    where, params = _selection(tenant_id, query, ids)
    return await db.fetchval(f"SELECT count(*) FROM devices d WHERE {' AND '.join(where)}", *params)


async def bulk_action(
    db: Executor, tenant_id: int, query: DeviceQuery, action: str, *, ids: Sequence[int] | None = None,
    tags: Sequence[str] | None = None, interval_s: int | None = None, quotas: Quotas = DEFAULT_QUOTAS,
) -> BulkResult:
    """Apply `action` to the tenant's devices matching `query` (and `ids`, when given); all or nothing.

    Callers must call `devices.notify_devices_changed` afterwards when `changed` > 0."""
    tag_list = _check_arguments(action, tags, interval_s)
    where, params = _selection(tenant_id, query, ids)
    select = (f"SELECT d.id, d.name, d.kind, d.interval_s, d.timeout_ms, d.enabled, d.tags FROM devices d "
              f"WHERE {' AND '.join(where)} ORDER BY d.id LIMIT {MAX_BULK + 1} FOR UPDATE")
    async with connection(db) as conn, conn.transaction():
        rows = await conn.fetch(select, *params)
        if len(rows) > MAX_BULK:
            raise InputError("filter", f"more than {MAX_BULK} devices match; narrow the filter (a tag, a kind, a "
                                       "name) or act on the fleet in parts")
        selected = [r["id"] for r in rows]
        if not selected:
            return BulkResult(action, 0, 0)
        if action in ("resume", "set_interval"):
            new_interval = interval_s if action == "set_interval" else None
            if new_interval is not None:
                too_long = [r for r in rows if r["timeout_ms"] > new_interval * 1000]
                if too_long:
                    first = too_long[0]
                    raise InputError("interval_s", f"{len(too_long)} selected device(s) time out later than "
                                                   f"{new_interval} s (e.g. {first['name']!r}: timeout_ms "
                                                   f"{first['timeout_ms']}); choose a longer interval or lower "
                                                   "their timeout first")
            added = sum(check_rate(r["kind"], new_interval or r["interval_s"], True if action == "resume" else r["enabled"])
                        - check_rate(r["kind"], r["interval_s"], r["enabled"]) for r in rows)
            if added > 0:
                before = await locked_usage(conn, tenant_id)
                admit(await effective(conn, tenant_id, quotas), before,
                      Usage(before.devices, before.checks_per_second + added), "action")
        if action in ("pause", "resume"):
            status = await conn.execute(UPDATE_ENABLED, tenant_id, selected, action == "resume")
        elif action == "set_interval":
            status = await conn.execute(UPDATE_INTERVAL, tenant_id, selected, interval_s)
        elif action == "delete":
            status = await conn.execute(DELETE_SELECTED, tenant_id, selected)
        else:
            changed_ids, changed_tags = [], []
            for r in rows:
                new = _retagged(r["tags"], tag_list, add=action == "tag_add")
                if new == list(r["tags"]):
                    continue
                if len(new) > MAX_TAGS:
                    raise InputError("tags", f"device {r['name']!r} would have {len(new)} tags, at most {MAX_TAGS}; "
                                             "remove some of its tags first")
                changed_ids.append(r["id"])
                changed_tags.append(",".join(new))
            if changed_ids:
                await conn.execute(UPDATE_TAGS, tenant_id, changed_ids, changed_tags)
            return BulkResult(action, len(selected), len(changed_ids))
    return BulkResult(action, len(selected), _count(status))


def _retagged(current: Sequence[str], tags: list[str], *, add: bool) -> list[str]:
    if add:
        return list(current) + [t for t in tags if t not in current]
    return [t for t in current if t not in tags]
