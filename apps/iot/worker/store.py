"""Evaluator writes to PostgreSQL: always multi-row statements over unnest() arrays, never one per check.

Rows for devices deleted meanwhile are dropped by joining `devices`, so a late result can never fail a
whole batch on a foreign key.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

UPSERT_REGION_VIEWS = """
INSERT INTO device_region_state (device_id, region, state, last_ok, last_latency_ms, last_error,
    last_checked_at, consecutive_failures, latency_mean_ms, latency_var_ms2, samples, slow_streak)
SELECT v.device_id, v.region, v.state, v.last_ok, v.latency, v.error, to_timestamp(v.at),
       v.failures, v.mean, v.var, v.samples, v.slow
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bool[], $5::real[], $6::text[], $7::float8[],
            $8::int[], $9::real[], $10::real[], $11::int[], $12::int[])
     AS v(device_id, region, state, last_ok, latency, error, at, failures, mean, var, samples, slow)
JOIN devices d ON d.id = v.device_id
ON CONFLICT (device_id, region) DO UPDATE SET
    state = EXCLUDED.state, last_ok = EXCLUDED.last_ok, last_latency_ms = EXCLUDED.last_latency_ms,
    last_error = EXCLUDED.last_error, last_checked_at = EXCLUDED.last_checked_at,
    consecutive_failures = EXCLUDED.consecutive_failures, latency_mean_ms = EXCLUDED.latency_mean_ms,
    latency_var_ms2 = EXCLUDED.latency_var_ms2, samples = EXCLUDED.samples, slow_streak = EXCLUDED.slow_streak
"""

UPSERT_ROLLUPS = """
INSERT INTO rollups (device_id, region, minute, checks, failures, latencies, latency_p50, latency_p95, latency_max)
SELECT v.device_id, v.region, to_timestamp(v.minute), v.checks, v.failures, v.lat::real[],
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(v.lat::real[]) x),
       (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY x) FROM unnest(v.lat::real[]) x),
       (SELECT max(x) FROM unnest(v.lat::real[]) x)
FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::int[], $5::int[], $6::text[])
     AS v(device_id, region, minute, checks, failures, lat)
JOIN devices d ON d.id = v.device_id
ON CONFLICT (device_id, region, minute) DO UPDATE SET
    checks = rollups.checks + EXCLUDED.checks,
    failures = rollups.failures + EXCLUDED.failures,
    latencies = rollups.latencies || EXCLUDED.latencies,
    latency_p50 = (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x)
                   FROM unnest(rollups.latencies || EXCLUDED.latencies) x),
    latency_p95 = (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY x)
                   FROM unnest(rollups.latencies || EXCLUDED.latencies) x),
    latency_max = GREATEST(rollups.latency_max, EXCLUDED.latency_max)
"""

# State changes, plus one webhook event per device whose state really changed (RETURNING only has rows
# that were updated, so a replayed change enqueues nothing) when its tenant has a webhook URL. The
# queue is durable: the sender (worker.webhooks) delivers from this table, never from memory.
UPDATE_DEVICE_STATES = """
WITH changed AS (
    UPDATE devices d SET state = v.state, state_since = to_timestamp(v.at)
    FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                $8::bool[])
         AS v(id, state, at, previous, incident_kind, summary, cause, notify)
    WHERE d.id = v.id AND d.state <> v.state
    RETURNING d.id, d.tenant_id, d.name, v.state, v.at, v.previous, v.incident_kind, v.summary, v.cause, v.notify
)
INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload)
SELECT c.tenant_id, e.event_id, 'device.state_changed',
       jsonb_build_object(
           'event_id', e.event_id, 'type', 'device.state_changed',
           'occurred_at', to_char(to_timestamp(c.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'device', jsonb_build_object('id', c.id, 'name', c.name),
           'state', c.state, 'previous_state', c.previous,
           'incident', CASE WHEN c.incident_kind IS NULL THEN NULL
                            ELSE jsonb_build_object('kind', c.incident_kind, 'summary', c.summary) END,
           'cause_device_id', c.cause)
FROM changed c
JOIN tenants t ON t.id = c.tenant_id
CROSS JOIN LATERAL (SELECT c.id || '-' || c.state || '-' || (c.at * 1000)::bigint AS event_id) e
WHERE t.webhook_url IS NOT NULL AND c.notify
ON CONFLICT (event_id) DO NOTHING
"""

# Close open incidents except those of the kind the device is now in (down stays open while down).
RESOLVE_INCIDENTS = """
UPDATE incidents i SET resolved_at = to_timestamp(v.at)
FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS v(device_id, at, keep_kind)
WHERE i.device_id = v.device_id AND i.resolved_at IS NULL AND i.kind IS DISTINCT FROM v.keep_kind
  AND i.kind <> 'metric'  -- metric incidents follow their rule (worker.metric_rules), not the state
"""

# The partial unique index incidents_one_open (state incidents; migration 0012) makes a replayed or concurrent open a no-op.
OPEN_INCIDENTS = """
INSERT INTO incidents (tenant_id, device_id, kind, summary, details, cause_device_id, opened_at)
SELECT d.tenant_id, v.device_id, v.kind, v.summary, v.details::jsonb, v.cause, to_timestamp(v.at)
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::float8[])
     AS v(device_id, kind, summary, details, cause, at)
JOIN devices d ON d.id = v.device_id
ON CONFLICT (device_id) WHERE resolved_at IS NULL AND kind <> 'metric' DO NOTHING
"""

# A suppressed child's own incident, opened once its parent recovered while it stayed down/degraded: its
# state does not change, so UPDATE_DEVICE_STATES enqueues nothing; this enqueues the `incident.opened` event.
ENQUEUE_ESCALATIONS = """
INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload)
SELECT d.tenant_id, e.event_id, 'incident.opened',
       jsonb_build_object(
           'event_id', e.event_id, 'type', 'incident.opened',
           'occurred_at', to_char(to_timestamp(v.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'device', jsonb_build_object('id', d.id, 'name', d.name),
           'state', d.state, 'previous_state', d.state,
           'incident', jsonb_build_object('kind', v.kind, 'summary', v.summary),
           'cause_device_id', NULL)
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[]) AS v(device_id, kind, summary, at)
JOIN devices d ON d.id = v.device_id
JOIN tenants t ON t.id = d.tenant_id
CROSS JOIN LATERAL (SELECT 'incident-' || d.id || '-' || (v.at * 1000)::bigint AS event_id) e
WHERE t.webhook_url IS NOT NULL
ON CONFLICT (event_id) DO NOTHING
"""

# Children down/degraded without an open incident: their alert was suppressed by a failing parent.
# Push devices are judged by the silence watch, not by results: the evaluator learns which are down
# from here, so children behind a silent push gateway stay quiet too.
SELECT_DOWN_PUSH_DEVICES = "SELECT id FROM devices WHERE kind = 'push' AND state = 'down'"

SELECT_SUPPRESSED_CHILDREN = """
SELECT d.id FROM devices d
WHERE d.parent_id IS NOT NULL AND d.state IN ('down', 'degraded')
  AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.device_id = d.id AND i.resolved_at IS NULL
                  AND i.kind <> 'metric')
"""

UPSERT_REGIONS = """
INSERT INTO regions (name, healthy, reason, last_heartbeat_at, updated_at)
SELECT v.name, v.healthy, v.reason, to_timestamp(v.beat), now()
FROM unnest($1::text[], $2::bool[], $3::text[], $4::float8[]) AS v(name, healthy, reason, beat)
ON CONFLICT (name) DO UPDATE SET healthy = EXCLUDED.healthy, reason = EXCLUDED.reason,
    last_heartbeat_at = EXCLUDED.last_heartbeat_at, updated_at = now()
"""

SELECT_REGION_VIEWS = """
SELECT s.device_id, s.region, s.last_ok, s.last_latency_ms, s.last_error,
       extract(epoch FROM s.last_checked_at)::float8 AS at, s.consecutive_failures,
       s.latency_mean_ms, s.latency_var_ms2, s.samples, s.slow_streak
FROM device_region_state s JOIN devices d ON d.id = s.device_id
WHERE d.enabled AND d.kind <> 'push'
"""


@dataclass(frozen=True, slots=True)
class StateChange:
    device_id: int
    state: str
    at: float
    # incident to open (None: none, e.g. recovery or a child behind a down parent)
    incident_kind: str | None = None
    summary: str = ""
    details: str = "{}"
    cause_device_id: int | None = None
    previous: str = "unknown"
    # False for a child behind a down parent: its failure is recorded, the parent's alert is the only one
    notify: bool = True
    # Same state as before, but its suppressed incident is now opened (parent recovered, child did not)
    escalated: bool = False


async def write_state_changes(conn: asyncpg.Connection, changes: list[StateChange]) -> None:
    """Device states and incidents, in the caller's transaction."""
    if not changes:
        return
    await conn.execute(
        UPDATE_DEVICE_STATES, [c.device_id for c in changes], [c.state for c in changes], [c.at for c in changes],
        [c.previous for c in changes], [c.incident_kind for c in changes], [c.summary or None for c in changes],
        [c.cause_device_id for c in changes], [c.notify for c in changes],
    )
    await conn.execute(
        RESOLVE_INCIDENTS, [c.device_id for c in changes], [c.at for c in changes],
        [c.incident_kind or (c.state if c.state in ("down", "degraded") else None) for c in changes],
    )
    opening = [c for c in changes if c.incident_kind]
    if opening:
        await conn.execute(
            OPEN_INCIDENTS, [c.device_id for c in opening], [c.incident_kind for c in opening],
            [c.summary for c in opening], [c.details for c in opening],
            [c.cause_device_id for c in opening], [c.at for c in opening],
        )
    escalated = [c for c in opening if c.escalated]
    if escalated:
        await conn.execute(
            ENQUEUE_ESCALATIONS, [c.device_id for c in escalated], [c.incident_kind for c in escalated],
            [c.summary for c in escalated], [c.at for c in escalated],
        )

# Result messages applied in a transaction (see migration 0005): recorded with the rows they produced,
# forgotten once acknowledged; a redelivered message found here is skipped.
RECORD_APPLIED_MESSAGES = """
INSERT INTO applied_result_messages (stream_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING
"""
FORGET_APPLIED_MESSAGES = """
DELETE FROM applied_result_messages WHERE stream_id = ANY($1::text[]) OR applied_at < now() - interval '1 day'
"""
SELECT_APPLIED_MESSAGES = "SELECT stream_id FROM applied_result_messages WHERE stream_id = ANY($1::text[])"


# Incident events that are not a device state change (metric rules open and resolve incidents while the
# device stays up): one delivery each when the tenant has a webhook. The event id names the incident and the
# transition, so a replayed pass enqueues nothing twice. Callers use `enqueue_incident_events` only, so the
# transport behind the queue (webhooks today, channels later) changes in one place.
ENQUEUE_INCIDENT_EVENTS = """
INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload)
SELECT d.tenant_id, e.event_id, v.type,
       jsonb_build_object(
           'event_id', e.event_id, 'type', v.type,
           'occurred_at', to_char(to_timestamp(v.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'device', jsonb_build_object('id', d.id, 'name', d.name),
           'state', d.state, 'previous_state', d.state,
           'incident', jsonb_build_object('id', v.incident_id, 'kind', v.kind, 'summary', v.summary,
                                          'details', v.details::jsonb),
           'cause_device_id', NULL)
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::float8[])
     AS v(device_id, type, incident_id, kind, summary, details, at)
JOIN devices d ON d.id = v.device_id
JOIN tenants t ON t.id = d.tenant_id
CROSS JOIN LATERAL (SELECT 'incident-' || v.incident_id || '-' || split_part(v.type, '.', 2) AS event_id) e
WHERE t.webhook_url IS NOT NULL
ON CONFLICT (event_id) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    device_id: int
    type: str  # incident.opened | incident.resolved
    incident_id: int
    kind: str
    summary: str
    details: str  # JSON object
    at: float


async def enqueue_incident_events(conn: asyncpg.Connection, events: list[IncidentEvent]) -> None:
    """Queue notifications of incidents opened or resolved, in the caller's transaction."""
    if not events:
        return
    await conn.execute(
        ENQUEUE_INCIDENT_EVENTS, [e.device_id for e in events], [e.type for e in events],
        [e.incident_id for e in events], [e.kind for e in events], [e.summary for e in events],
        [e.details for e in events], [e.at for e in events],
    )
