"""Incident repository: one tenant's incidents (newest first, filtered), each with its timeline, and what
people do with them (acknowledge, add a note)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from iot.errors import Conflict, InputError
from iot.inputs import control_character_problem, text_problem
from iot.repo._db import Executor, check_ids, check_page_limit, connection

KINDS = ("down", "degraded", "silent")
STATUSES = ("open", "resolved")
MAX_NOTE = 2000
MAX_ACTOR = 200

COLUMNS = """i.id, i.device_id, d.name AS device_name, i.kind, i.summary, i.details, i.cause_device_id,
       i.opened_at, i.resolved_at, i.acknowledged_by, i.acknowledged_at"""

SELECT_INCIDENTS = f"""
SELECT {COLUMNS}
FROM incidents i JOIN devices d ON d.id = i.device_id
WHERE i.tenant_id = $1
  AND ($2::bigint IS NULL OR i.device_id = $2)
  AND ($3::text IS NULL OR ($3 = 'open') = (i.resolved_at IS NULL))
  AND ($4::bigint IS NULL OR i.id < $4)
  AND ($6::text IS NULL OR i.kind = $6)
ORDER BY i.id DESC
LIMIT $5
"""
SELECT_INCIDENT = f"""
SELECT {COLUMNS}
FROM incidents i JOIN devices d ON d.id = i.device_id
WHERE i.tenant_id = $1 AND i.id = $2
"""
SELECT_EVENTS = """
SELECT id, at, kind, actor, text FROM incident_events
WHERE tenant_id = $1 AND incident_id = $2
ORDER BY at, id
LIMIT 500
"""
# Children of the incident's device that are failing without an incident of their own: their alerts are
# held back by this one (parent suppression in the evaluator and the silence watch).
SELECT_SUPPRESSED_CHILDREN = """
SELECT c.id, c.name, c.state, c.state_since FROM devices c
WHERE c.tenant_id = $1 AND c.parent_id = $2 AND c.state IN ('down', 'degraded')
  AND NOT EXISTS (SELECT 1 FROM incidents x WHERE x.device_id = c.id AND x.resolved_at IS NULL)
ORDER BY c.name
LIMIT 200
"""
# Notifications sent for the incident: today the webhook deliveries about its device from its opening to
# its resolution (the rows are queued in the same transaction as the change; a few seconds of slack cover
# the evaluator's clock). Channels will replace this one query.
SELECT_NOTIFICATIONS = """
SELECT id, created_at, event_type, status, attempts, last_status_code, last_error, delivered_at, payload->>'state'
       AS state
FROM webhook_deliveries
WHERE tenant_id = $1 AND created_at >= $3::timestamptz - interval '5 seconds'
  AND ($4::timestamptz IS NULL OR created_at <= $4::timestamptz + interval '5 seconds')
  AND payload->'device'->>'id' = $2::bigint::text
ORDER BY id
LIMIT 200
"""
ACKNOWLEDGE = """
UPDATE incidents SET acknowledged_by = $3, acknowledged_at = now()
WHERE tenant_id = $1 AND id = $2 AND acknowledged_at IS NULL AND resolved_at IS NULL
RETURNING acknowledged_at
"""
INSERT_EVENT = """
INSERT INTO incident_events (tenant_id, incident_id, at, kind, actor, text)
VALUES ($1, $2, coalesce($6, now()), $3, $4, $5)
RETURNING id, at, kind, actor, text
"""


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
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    kind: str  # opened, notified, acknowledged, note, resolved, suppressed
    actor: str
    text: str
    id: int | None = None  # None: not an incident_events row (a notification read from its delivery)
    result: str | None = None  # notified: delivered, pending (retrying) or failed, with the last answer


@dataclass(frozen=True, slots=True)
class SuppressedChild:
    id: int
    name: str
    state: str
    state_since: datetime


@dataclass(frozen=True, slots=True)
class IncidentDetail:
    incident: Incident
    timeline: list[Event] = field(default_factory=list)
    suppressed_children: list[SuppressedChild] = field(default_factory=list)


def check_filters(status: str | None, kind: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise InputError("status", f"must be one of {', '.join(STATUSES)}")
    if kind is not None and kind not in KINDS:
        raise InputError("kind", f"must be one of {', '.join(KINDS)}")


async def list_incidents(
    db: Executor, tenant_id: int, *, device_id: int | None = None, open_only: bool = False,
    status: str | None = None, kind: str | None = None, before_id: int | None = None, limit: int = 50,
) -> list[Incident]:
    """Newest first; page with `before_id` = the last id of the previous page. `status`: open or resolved
    (`open_only` is status='open')."""
    check_page_limit(limit)
    check_ids(device_id=device_id, before=before_id)
    status = "open" if open_only and status is None else status
    check_filters(status, kind)
    rows = await db.fetch(SELECT_INCIDENTS, tenant_id, device_id, status, before_id, limit, kind)
    return [Incident(**dict(r)) for r in rows]


async def notifications_sent(db: Executor, tenant_id: int, incident: Incident) -> list[Event]:
    """The notifications about the incident, as `notified` events with their delivery result."""
    rows = await db.fetch(SELECT_NOTIFICATIONS, tenant_id, incident.device_id, incident.opened_at,
                          incident.resolved_at)
    events = []
    for r in rows:
        what = f"{r['event_type']} ({r['state']})" if r["state"] else r["event_type"]
        if r["status"] == "delivered":
            result = f"delivered (HTTP {r['last_status_code']})" if r["last_status_code"] else "delivered"
        else:
            answer = r["last_error"] or (f"HTTP {r['last_status_code']}" if r["last_status_code"] else None)
            result = r["status"] + (f" after {r['attempts']} attempt(s): {answer}" if r["attempts"] else "")
        events.append(Event(r["created_at"], "notified", "system", f"webhook {what}", result=result))
    return events


async def get_incident(db: Executor, tenant_id: int, incident_id: int) -> IncidentDetail | None:
    """The incident with its timeline (events and notifications, oldest first) and the children it
    currently suppresses; None when the tenant has no such incident."""
    check_ids(incident_id=incident_id)
    async with connection(db) as conn:
        row = await conn.fetchrow(SELECT_INCIDENT, tenant_id, incident_id)
        if row is None:
            return None
        incident = Incident(**dict(row))
        events = [Event(**dict(r)) for r in await conn.fetch(SELECT_EVENTS, tenant_id, incident_id)]
        events += await notifications_sent(conn, tenant_id, incident)
        children = [SuppressedChild(**dict(r)) for r in await conn.fetch(
            SELECT_SUPPRESSED_CHILDREN, tenant_id, incident.device_id)] if incident.resolved_at is None else []
    events.sort(key=lambda e: (e.at, _ORDER.get(e.kind, 2)))
    return IncidentDetail(incident, events, children)


# Same instant: what happened first reads first.
_ORDER = {"suppressed": 0, "opened": 1, "resolved": 3}


def _actor(actor: str) -> str:
    actor = actor.strip()
    problem = text_problem(actor, MAX_ACTOR, min_length=1)
    if problem:
        raise InputError("actor", f"{problem}; send who you are (a name or an e-mail address)")
    return actor


async def acknowledge(db: Executor, tenant_id: int, incident_id: int, actor: str) -> IncidentDetail | None:
    """Mark an open incident acknowledged by `actor` (once); None when there is no such incident."""
    actor = _actor(actor)
    async with connection(db) as conn, conn.transaction():
        current = await conn.fetchrow(SELECT_INCIDENT, tenant_id, incident_id)
        if current is None:
            return None
        at = await conn.fetchval(ACKNOWLEDGE, tenant_id, incident_id, actor)
        if at is None:
            if current["resolved_at"] is not None:
                raise Conflict("incident", "it is resolved already; add a note instead")
            raise Conflict("incident", f"already acknowledged by {current['acknowledged_by']} at "
                                       f"{current['acknowledged_at']:%Y-%m-%d %H:%M:%S} UTC; add a note instead")
        await conn.execute(INSERT_EVENT, tenant_id, incident_id, "acknowledged", actor, "", at)
    return await get_incident(db, tenant_id, incident_id)


async def add_note(db: Executor, tenant_id: int, incident_id: int, actor: str, text: str) -> Event | None:
    """A note by `actor` on the incident's timeline; None when there is no such incident."""
    actor = _actor(actor)
    text = text.strip()
    if not text or len(text) > MAX_NOTE:
        raise InputError("text", f"must be 1-{MAX_NOTE} characters (got {len(text)}); write the note")
    problem = control_character_problem(text.replace("\n", " ").replace("\r", " ").replace("\t", " "))
    if problem:
        raise InputError("text", f"line breaks and tabs are fine, other characters not: {problem}")
    async with connection(db) as conn:
        if await conn.fetchrow(SELECT_INCIDENT, tenant_id, incident_id) is None:
            return None
        row = await conn.fetchrow(INSERT_EVENT, tenant_id, incident_id, "note", actor, text, None)
    return Event(**dict(row))
