"""Push devices (kind `push`) go `down` when nothing arrived within their grace time, `up` on the next
metric or heartbeat. The tracker records arrivals in `devices.last_seen_at`; the leader compares.

Grace defaults to three intervals; a device never heard from counts from its creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import asyncpg

from iot.log import log_fields
from iot.worker import store
from iot.worker.maintenance import MaintenanceCache

logger = logging.getLogger(__name__)

# Only push devices whose state must change come back, so the query stays cheap when all is well.
SELECT_SILENCE_CHANGES = """
SELECT d.id, d.tenant_id, d.name, d.state, d.parent_id, p.state AS parent_state, p.name AS parent_name,
       extract(epoch FROM d.state_since)::float8 AS since,
       EXISTS (SELECT 1 FROM incidents i WHERE i.device_id = d.id AND i.resolved_at IS NULL) AS alerted,
       extract(epoch FROM coalesce(d.last_seen_at, d.created_at))::float8 AS seen,
       coalesce(d.grace_s, 3 * d.interval_s) AS grace,
       coalesce(d.last_seen_at, d.created_at)
           < now() - make_interval(secs => coalesce(d.grace_s, 3 * d.interval_s)) AS silent
FROM devices d LEFT JOIN devices p ON p.id = d.parent_id
WHERE d.enabled AND d.kind = 'push' AND (
    (d.state <> 'down' AND coalesce(d.last_seen_at, d.created_at)
        < now() - make_interval(secs => coalesce(d.grace_s, 3 * d.interval_s)))
    OR (d.state <> 'up' AND d.last_seen_at
        >= now() - make_interval(secs => coalesce(d.grace_s, 3 * d.interval_s)))
    -- suppressed behind a down parent, and still silent a full grace time after the parent recovered; or,
    -- without a parent, held back by a maintenance window (the caller checks that the window is over)
    OR (d.state = 'down' AND p.state IS DISTINCT FROM 'down'
        AND greatest(coalesce(d.last_seen_at, d.created_at), p.state_since)
            < now() - make_interval(secs => coalesce(d.grace_s, 3 * d.interval_s))
        AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.device_id = d.id AND i.resolved_at IS NULL
                        AND i.kind <> 'metric')))
"""


async def silence_changes(conn: asyncpg.Connection, maintenance: MaintenanceCache | None = None
                          ) -> list[store.StateChange]:
    now = time.time()
    changes: list[store.StateChange] = []
    for row in await conn.fetch(SELECT_SILENCE_CHANGES):
        window = None if maintenance is None else maintenance.covering(row["tenant_id"], row["id"], now)
        if not row["silent"]:
            # heard from within its grace time: up (from down, or from unknown on its first heartbeat); a
            # device that was down without an alert (parent, maintenance) recovers silently, as in the evaluator
            changes.append(store.StateChange(row["id"], "up", now, previous=row["state"],
                                             notify=row["state"] != "down" or row["alerted"]))
            continue
        silent_for = int(now - row["seen"])
        summary = f"{row['name']} is silent: nothing received for {silent_for} s (grace {row['grace']} s)"
        details = json.dumps({"silent_for_s": silent_for, "grace_s": row["grace"]})
        if row["state"] == "down":
            if window is not None:
                continue  # still in maintenance: its alert waits
            # its alert was held back (parent down, or a maintenance window); that is over, the silence is not
            if row["parent_id"] is not None:
                after = f"its parent {row['parent_name']} recovered"
                held = f"alert suppressed by its parent {row['parent_name']} (device {row['parent_id']}), which was down"
            else:
                after, held = "a maintenance window ended", "alert held back by a maintenance window"
            changes.append(store.StateChange(
                row["id"], "down", now, "silent", f"{summary}; still silent after {after}", details, previous="down",
                escalated=True, held_text=held, held_at=row["since"]))
        elif row["parent_state"] == "down":
            changes.append(store.StateChange(row["id"], "down", now, None, summary, details,
                                             cause_device_id=row["parent_id"], previous=row["state"], notify=False))
        elif window is not None:
            # in maintenance: the state is recorded, the alert waits for the window's end (branch above)
            changes.append(store.StateChange(row["id"], "down", now, None, summary, details, previous=row["state"],
                                             notify=False))
        else:
            changes.append(store.StateChange(row["id"], "down", now, "silent", summary, details,
                                             previous=row["state"]))
    return changes


async def check_silence(pool: asyncpg.Pool, maintenance: MaintenanceCache | None = None
                        ) -> list[store.StateChange]:
    """One pass: find and write the push devices whose state changes (one transaction)."""
    if maintenance is not None:
        await maintenance.maybe_refresh()
    async with pool.acquire() as conn, conn.transaction():
        changes = await silence_changes(conn, maintenance)
        await store.write_state_changes(conn, changes)
    for change in changes:
        log_fields(logger, logging.INFO, "push device state changed", device_id=change.device_id,
                   state=change.state, incident=change.incident_kind)
    return changes


async def run_silence_watch(pool: asyncpg.Pool, stop: asyncio.Event, period_s: float = 2.0,
                            maintenance: MaintenanceCache | None = None) -> None:
    while not stop.is_set():
        try:
            await check_silence(pool, maintenance)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log_fields(logger, logging.WARNING, "silence check failed, retrying", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=period_s)
