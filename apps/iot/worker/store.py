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

# State changes, plus one event per device whose state really changed (RETURNING only has rows that were
# updated, so a replayed change enqueues nothing): one row for the tenant's webhook when it has a URL, and
# one per enabled channel that wants this kind of event and whose routing rule matches the device (all
# devices, any of its tags, or the device itself). The queue is durable: the outbox sender
# (worker.outbox) delivers from this table, never from memory. `devices o` is the row before the
# update: its state_since gives "up after 12m down".
UPDATE_DEVICE_STATES = """
WITH changed AS (
    UPDATE devices d SET state = v.state, state_since = to_timestamp(v.at)
    FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                $8::bool[])
         AS v(id, state, at, previous, incident_kind, summary, cause, notify),
         devices o
    WHERE d.id = v.id AND o.id = v.id AND d.state <> v.state
    RETURNING d.id, d.tenant_id, d.name, d.tags, o.state_since AS previous_since, v.state, v.at, v.previous,
              v.incident_kind, v.summary, v.cause, v.notify
), events AS (
    SELECT c.tenant_id, c.id, c.tags, c.at, c.previous_since, e.event_id,
           CASE WHEN c.incident_kind = 'silent' THEN 'silent'
                WHEN c.state IN ('down', 'degraded') THEN c.state
                WHEN c.state = 'up' AND c.previous IN ('down', 'degraded') THEN 'up' END AS kind,
           jsonb_build_object(
               'event_id', e.event_id, 'type', 'device.state_changed',
               'occurred_at', to_char(to_timestamp(c.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'device', jsonb_build_object('id', c.id, 'name', c.name),
               'state', c.state, 'previous_state', c.previous,
               'incident', CASE WHEN c.incident_kind IS NULL THEN NULL
                                ELSE jsonb_build_object('kind', c.incident_kind, 'summary', c.summary) END,
               'cause_device_id', c.cause) AS payload
    FROM changed c
    CROSS JOIN LATERAL (SELECT c.id || '-' || c.state || '-' || (c.at * 1000)::bigint AS event_id) e
    WHERE c.notify
), tenant_webhooks AS (
    INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload)
    SELECT e.tenant_id, e.event_id, 'device.state_changed', e.payload
    FROM events e JOIN tenants t ON t.id = e.tenant_id
    WHERE t.webhook_url IS NOT NULL
    ON CONFLICT (event_id, channel_id) DO NOTHING
)
INSERT INTO webhook_deliveries (tenant_id, channel_id, event_id, event_type, payload)
SELECT e.tenant_id, ch.id, e.event_id, 'device.state_changed',
       e.payload || jsonb_build_object(
           'kind', e.kind,
           'duration_s', CASE WHEN e.kind = 'up' THEN round((e.at - extract(epoch FROM e.previous_since))::numeric) END)
FROM events e
JOIN channels ch ON ch.tenant_id = e.tenant_id AND ch.enabled AND e.kind = ANY(ch.events)
    AND (ch.route = 'all' OR (ch.route = 'tags' AND e.tags && ch.route_tags)
         OR (ch.route = 'devices' AND e.id = ANY(ch.route_device_ids)))
ON CONFLICT (event_id, channel_id) DO NOTHING
"""

# Close open incidents except those of the kind the device is now in (down stays open while down), each
# with its `resolved` timeline event.
RESOLVE_INCIDENTS = """
WITH resolved AS (
    UPDATE incidents i SET resolved_at = to_timestamp(v.at)
    FROM unnest($1::bigint[], $2::float8[], $3::text[], $4::text[]) AS v(device_id, at, keep_kind, state)
    WHERE i.device_id = v.device_id AND i.resolved_at IS NULL AND i.kind IS DISTINCT FROM v.keep_kind
      AND i.kind <> 'metric'  -- metric incidents follow their rule (worker.metric_rules), not the state
    RETURNING i.id, i.tenant_id, i.resolved_at, v.state
)
INSERT INTO incident_events (tenant_id, incident_id, at, kind, text)
SELECT r.tenant_id, r.id, r.resolved_at, 'resolved',
       CASE WHEN r.state IN ('down', 'degraded') THEN 'closed: the device is now ' || r.state
            ELSE 'recovered: the device is ' || r.state END
FROM resolved r
"""

# The partial unique index incidents_one_open (state incidents; migration 0012) makes a replayed or concurrent open a no-op. Each incident
# opened gets its `opened` timeline event, preceded by a `suppressed` one ($7 text, at $8) when its alert
# was held back first (behind a failing parent, or by a maintenance window).
OPEN_INCIDENTS = """
WITH v AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::float8[],
                         $7::text[], $8::float8[])
         AS v(device_id, kind, summary, details, cause, at, held_text, held_at)
), opened AS (
    INSERT INTO incidents (tenant_id, device_id, kind, summary, details, cause_device_id, opened_at)
    SELECT d.tenant_id, v.device_id, v.kind, v.summary, v.details::jsonb, v.cause, to_timestamp(v.at)
    FROM v JOIN devices d ON d.id = v.device_id
    ON CONFLICT (device_id) WHERE resolved_at IS NULL AND kind <> 'metric' DO NOTHING
    RETURNING id, tenant_id, device_id, opened_at, summary
)
INSERT INTO incident_events (tenant_id, incident_id, at, kind, text)
SELECT e.tenant_id, e.id, e.at, e.kind, e.text FROM (
    SELECT o.tenant_id, o.id, to_timestamp(coalesce(v.held_at, v.at)) AS at, 'suppressed' AS kind,
           v.held_text AS text, 0 AS n
    FROM opened o JOIN v ON v.device_id = o.device_id WHERE v.held_text <> ''
    UNION ALL
    SELECT o.tenant_id, o.id, o.opened_at, 'opened', o.summary, 1 FROM opened o
) e
ORDER BY e.id, e.n
"""

# A suppressed child's own incident, opened once its parent recovered while it stayed down/degraded: its
# state does not change, so UPDATE_DEVICE_STATES enqueues nothing; this enqueues the `incident.opened` event.
ENQUEUE_ESCALATIONS = """
WITH events AS (
    SELECT d.tenant_id, d.id, d.tags, e.event_id, v.kind,
           jsonb_build_object(
               'event_id', e.event_id, 'type', 'incident.opened',
               'occurred_at', to_char(to_timestamp(v.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'device', jsonb_build_object('id', d.id, 'name', d.name),
               'state', d.state, 'previous_state', d.state,
               'incident', jsonb_build_object('kind', v.kind, 'summary', v.summary),
               'cause_device_id', NULL) AS payload
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[]) AS v(device_id, kind, summary, at)
    JOIN devices d ON d.id = v.device_id
    CROSS JOIN LATERAL (SELECT 'incident-' || d.id || '-' || (v.at * 1000)::bigint AS event_id) e
), tenant_webhooks AS (
    INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload)
    SELECT e.tenant_id, e.event_id, 'incident.opened', e.payload
    FROM events e JOIN tenants t ON t.id = e.tenant_id
    WHERE t.webhook_url IS NOT NULL
    ON CONFLICT (event_id, channel_id) DO NOTHING
)
INSERT INTO webhook_deliveries (tenant_id, channel_id, event_id, event_type, payload)
SELECT e.tenant_id, ch.id, e.event_id, 'incident.opened', e.payload || jsonb_build_object('kind', e.kind)
FROM events e
JOIN channels ch ON ch.tenant_id = e.tenant_id AND ch.enabled AND e.kind = ANY(ch.events)
    AND (ch.route = 'all' OR (ch.route = 'tags' AND e.tags && ch.route_tags)
         OR (ch.route = 'devices' AND e.id = ANY(ch.route_device_ids)))
ON CONFLICT (event_id, channel_id) DO NOTHING
"""

# A region that was healthy and is not any more: one event per channel (of any tenant) that asked for
# "region_unhealthy". Run before UPSERT_REGIONS, with its parameters, in the same transaction.
ENQUEUE_REGION_EVENTS = """
INSERT INTO webhook_deliveries (tenant_id, channel_id, event_id, event_type, payload)
SELECT ch.tenant_id, ch.id, e.event_id, 'region.unhealthy',
       jsonb_build_object(
           'event_id', e.event_id, 'type', 'region.unhealthy', 'kind', 'region_unhealthy',
           'occurred_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'region', v.name, 'incident', jsonb_build_object('kind', 'region_unhealthy', 'summary', v.reason))
FROM unnest($1::text[], $2::bool[], $3::text[]) AS v(name, healthy, reason)
JOIN regions r ON r.name = v.name AND r.healthy AND NOT v.healthy
CROSS JOIN LATERAL (SELECT 'region-' || v.name || '-' || (extract(epoch FROM now()) * 1000)::bigint AS event_id) e
JOIN channels ch ON ch.enabled AND 'region_unhealthy' = ANY(ch.events)
ON CONFLICT (event_id, channel_id) DO NOTHING
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

# Down/degraded devices without a parent and without an open incident: held back by maintenance when the
# last leader stopped (children are SELECT_SUPPRESSED_CHILDREN's). Their window is looked up again.
SELECT_HELD_DEVICES = """
SELECT d.id, extract(epoch FROM d.state_since)::float8 AS since FROM devices d
WHERE d.parent_id IS NULL AND d.state IN ('down', 'degraded')
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
    # Why its alert was held back until now (parent, maintenance) and since when: the incident's first event
    held_text: str = ""
    held_at: float | None = None


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
        [c.state for c in changes],
    )
    opening = [c for c in changes if c.incident_kind]
    if opening:
        await conn.execute(
            OPEN_INCIDENTS, [c.device_id for c in opening], [c.incident_kind for c in opening],
            [c.summary for c in opening], [c.details for c in opening],
            [c.cause_device_id for c in opening], [c.at for c in opening], [c.held_text for c in opening],
            [c.held_at for c in opening],
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
# device stays up): one delivery to the tenant's webhook, if any, and one per channel routed to the device
# that asked for "metric". The event id names the incident and the transition, so a replayed pass enqueues
# nothing twice.
ENQUEUE_INCIDENT_EVENTS = """
WITH events AS (
    SELECT d.tenant_id, d.id, d.tags, e.event_id, v.type,
       jsonb_build_object(
           'event_id', e.event_id, 'type', v.type,
           'occurred_at', to_char(to_timestamp(v.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'device', jsonb_build_object('id', d.id, 'name', d.name),
           'state', d.state, 'previous_state', d.state,
           'incident', jsonb_build_object('id', v.incident_id, 'kind', v.kind, 'summary', v.summary,
                                          'details', v.details::jsonb),
           'cause_device_id', NULL) AS payload
    FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::float8[])
         AS v(device_id, type, incident_id, kind, summary, details, at)
    JOIN devices d ON d.id = v.device_id
    CROSS JOIN LATERAL (SELECT 'incident-' || v.incident_id || '-' || split_part(v.type, '.', 2) AS event_id) e
), tenant_webhooks AS (
    INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload)
    SELECT e.tenant_id, e.event_id, e.type, e.payload
    FROM events e JOIN tenants t ON t.id = e.tenant_id
    WHERE t.webhook_url IS NOT NULL
    ON CONFLICT (event_id, channel_id) DO NOTHING
)
INSERT INTO webhook_deliveries (tenant_id, channel_id, event_id, event_type, payload)
SELECT e.tenant_id, ch.id, e.event_id, e.type, e.payload || jsonb_build_object('kind', 'metric')
FROM events e
JOIN channels ch ON ch.tenant_id = e.tenant_id AND ch.enabled AND 'metric' = ANY(ch.events)
    AND (ch.route = 'all' OR (ch.route = 'tags' AND e.tags && ch.route_tags)
         OR (ch.route = 'devices' AND e.id = ANY(ch.route_device_ids)))
ON CONFLICT (event_id, channel_id) DO NOTHING
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
