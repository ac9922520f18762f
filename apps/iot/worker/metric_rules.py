"""Metric rules (migration 0012): open an incident when a rule held for its duration, resolve it when it stops.

The leader evaluates every enabled rule against each device it applies to (the device itself, or every device of
the tenant carrying the rule's tag) over that device's recent points of the metric:

- a point *matches* when `value <operator> threshold` (threshold rules) or when it lies more than `z_score`
  standard deviations from the baseline mean (anomaly rules; baseline: the day before the window, from the
  minute rollups, exact through their sums of squares, like the EWMA latency baseline but without a warm-up
  state to keep);
- the rule *holds* when the newest point matches and every point since the first of that matching streak
  matches, the streak covering at least `for_s` (0: the newest point alone decides);
- it *stops holding* on the first newer point that does not match. No recent points: no verdict, nothing changes
  (a silent device is the silence watch's business).

Time comes from the points (and `now` for the window), never from sleeps, so a device that sends a backlog
gets the same verdict as one that sent live. Reads are bounded: per pair three index scans of
`device_metrics (device_id, ts)` within `for_s + lookback`, and the baseline from at most a day of rollups.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

import asyncpg

from iot.log import log_fields
from iot.repo.metric_rules import rule_text
from iot.worker import store

logger = logging.getLogger(__name__)

# Whether point m matches rule p (baseline b): fixed SQL, the operator is chosen from a closed list by CASE.
_MATCHES = """
CASE p.kind
    WHEN 'threshold' THEN CASE p.operator
        WHEN '>' THEN m.value > p.threshold WHEN '>=' THEN m.value >= p.threshold
        WHEN '<' THEN m.value < p.threshold WHEN '<=' THEN m.value <= p.threshold
        WHEN '==' THEN m.value = p.threshold WHEN '!=' THEN m.value <> p.threshold END
    ELSE abs(m.value - b.mean) > p.z_score * b.stddev
END
"""

_POINTS = """
FROM device_metrics m
WHERE m.device_id = p.device_id AND m.name = p.metric
  AND m.ts > p.since AND m.ts <= to_timestamp($1)
"""

# $1 now (epoch s), $2 lookback (s) beyond for_s, $3 baseline span (s), $4 points a baseline needs, $5 tenant.
# Tenant in the join: a rule only ever sees its own tenant's devices.
EVALUATE_RULES = f"""
WITH p AS (
    SELECT r.id AS rule_id, r.tenant_id, r.metric, r.kind, r.operator, r.threshold, r.z_score, r.for_s,
           d.id AS device_id, d.name AS device_name,
           to_timestamp($1) - make_interval(secs => r.for_s + $2) AS since
    FROM metric_rules r
    JOIN devices d ON d.id = r.device_id AND d.tenant_id = r.tenant_id AND d.enabled
    WHERE r.enabled AND r.tenant_id = $5 AND r.device_id IS NOT NULL
    UNION ALL  -- two joins, not one OR: each is index-backed (primary key; the GIN index on tags)
    SELECT r.id, r.tenant_id, r.metric, r.kind, r.operator, r.threshold, r.z_score, r.for_s, d.id, d.name,
           to_timestamp($1) - make_interval(secs => r.for_s + $2)
    FROM metric_rules r
    JOIN devices d ON d.tags @> ARRAY[r.tag] AND d.tenant_id = r.tenant_id AND d.enabled
    WHERE r.enabled AND r.tenant_id = $5 AND r.tag IS NOT NULL
)
SELECT p.rule_id, p.tenant_id, p.metric, p.kind, p.operator, p.threshold, p.z_score, p.for_s, p.device_id,
       p.device_name, b.mean, b.stddev, b.n AS baseline_points,
       extract(epoch FROM last.ts)::float8 AS last_ts, last.value AS last_value, last.matches AS last_matches,
       extract(epoch FROM streak.start)::float8 AS streak_start
FROM p
LEFT JOIN LATERAL (
    SELECT s.n, s.mean, sqrt(greatest(s.sum_sq / s.n - s.mean * s.mean, 0)) AS stddev
    FROM (SELECT sum(r.count)::float8 AS n, sum(r.sum) / nullif(sum(r.count), 0) AS mean, sum(r.sum_sq) AS sum_sq
          FROM metric_rollups r
          WHERE p.kind = 'anomaly' AND r.device_id = p.device_id AND r.name = p.metric
            AND r.minute >= p.since - make_interval(secs => $3) AND r.minute < date_trunc('minute', p.since)
            -- minutes of astronomic values (their squares overflowed at ingest) stay out: the arithmetic
            -- below then cannot overflow (mean^2 <= sum_sq / n)
            AND r.sum_sq < 1e300) s
    WHERE s.n >= $4
) b ON true
LEFT JOIN LATERAL (SELECT m.ts, m.value, {_MATCHES} AS matches {_POINTS} ORDER BY m.ts DESC LIMIT 1) last ON true
-- ORDER BY .. LIMIT 1 rather than max()/min(): the index scan stops at the first row that qualifies
LEFT JOIN LATERAL (SELECT m.ts {_POINTS} AND NOT ({_MATCHES}) ORDER BY m.ts DESC LIMIT 1) bad ON last.matches
LEFT JOIN LATERAL (SELECT m.ts AS start {_POINTS} AND m.ts > coalesce(bad.ts, '-infinity') ORDER BY m.ts LIMIT 1
) streak ON last.matches
"""

SELECT_OPEN_METRIC_INCIDENTS = """
SELECT id, device_id, (details->>'rule_id')::bigint AS rule_id, summary
FROM incidents WHERE kind = 'metric' AND resolved_at IS NULL AND tenant_id = $1
"""

# Tenants with something to judge: enabled rules, or metric incidents still open (their rule may be gone).
SELECT_RULE_TENANTS = """
SELECT tenant_id FROM metric_rules WHERE enabled
UNION
SELECT tenant_id FROM incidents WHERE kind = 'metric' AND resolved_at IS NULL
ORDER BY tenant_id
"""

OPEN_METRIC_INCIDENT = """
INSERT INTO incidents (tenant_id, device_id, kind, summary, details, opened_at)
SELECT d.tenant_id, d.id, 'metric', $2, $3::text::jsonb, to_timestamp($4)
FROM devices d WHERE d.id = $1
ON CONFLICT (device_id, ((details->>'rule_id')::bigint)) WHERE resolved_at IS NULL AND kind = 'metric' DO NOTHING
RETURNING id
"""

RESOLVE_METRIC_INCIDENT = """
UPDATE incidents SET resolved_at = to_timestamp($2), details = details || $3::text::jsonb
WHERE id = $1 AND resolved_at IS NULL
RETURNING device_id, summary, details::text
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    rule_id: int
    device_id: int
    # True: held for the rule's duration; False: the newest point does not match; None: no recent point, no
    # baseline yet, or matching for less than the duration: leave things as they are
    holds: bool | None
    summary: str
    details: dict


def verdict(row: asyncpg.Record) -> Verdict:
    text = rule_text(row["metric"], row["kind"], row["operator"], row["threshold"], row["z_score"], row["for_s"])
    details: dict = {"rule_id": row["rule_id"], "metric": row["metric"], "rule": text,
                     "last_value": row["last_value"]}
    summary = f"{row['device_name']}: {text} (last {row['last_value']:g})" if row["last_value"] is not None else ""
    if row["last_ts"] is None or (row["kind"] == "anomaly" and row["mean"] is None):
        return Verdict(row["rule_id"], row["device_id"], None, summary, details)
    if row["kind"] == "anomaly":
        details |= {"baseline_mean": row["mean"], "baseline_stddev": row["stddev"]}
    if not row["last_matches"]:
        return Verdict(row["rule_id"], row["device_id"], False, summary, details)
    # matching, but not for long enough yet: an open incident stays open, none opens
    held_for = row["last_ts"] - row["streak_start"]
    return Verdict(row["rule_id"], row["device_id"], True if held_for >= row["for_s"] else None, summary, details)


@dataclass(frozen=True, slots=True)
class Pass:
    opened: list[tuple[int, int]]  # (rule_id, device_id)
    resolved: list[tuple[int, int]]


async def evaluate_rules(pool: asyncpg.Pool, *, now: float | None = None, lookback_s: int = 900,
                         baseline_s: int = 86_400, baseline_points: int = 30) -> Pass:
    """One pass over every rule: open and resolve incidents and queue their notifications.

    One transaction per tenant: a tenant whose data Postgres refuses to compute (or a slow tenant) delays or
    fails only its own rules; the others are judged all the same."""
    now = time.time() if now is None else now
    total = Pass([], [])
    for tenant_id in [r["tenant_id"] for r in await pool.fetch(SELECT_RULE_TENANTS)]:
        try:
            async with pool.acquire() as conn, conn.transaction():
                done = await _evaluate_tenant(conn, tenant_id, now, lookback_s, baseline_s, baseline_points)
        except asyncpg.PostgresConnectionError:
            raise
        except asyncpg.PostgresError as exc:
            log_fields(logger, logging.WARNING, "metric rules of a tenant failed, skipped this pass",
                       tenant_id=tenant_id, error=type(exc).__name__)
            continue
        total.opened.extend(done.opened)
        total.resolved.extend(done.resolved)
    for rule_id, device_id in total.opened:
        log_fields(logger, logging.INFO, "metric rule incident opened", rule_id=rule_id, device_id=device_id)
    for rule_id, device_id in total.resolved:
        log_fields(logger, logging.INFO, "metric rule incident resolved", rule_id=rule_id, device_id=device_id)
    return total


async def _evaluate_tenant(conn: asyncpg.Connection, tenant_id: int, now: float, lookback_s: int, baseline_s: int,
                           baseline_points: int) -> Pass:
    rows = await conn.fetch(EVALUATE_RULES, now, lookback_s, baseline_s, baseline_points, tenant_id)
    verdicts = {(r["rule_id"], r["device_id"]): verdict(r) for r in rows}
    open_incidents = {(r["rule_id"], r["device_id"]): r
                      for r in await conn.fetch(SELECT_OPEN_METRIC_INCIDENTS, tenant_id)}
    events: list[store.IncidentEvent] = []
    opened, resolved = [], []
    for key, v in verdicts.items():
        if v.holds and key not in open_incidents:
            details = json.dumps(v.details)
            incident_id = await conn.fetchval(OPEN_METRIC_INCIDENT, v.device_id, v.summary, details, now)
            if incident_id is not None:
                opened.append(key)
                events.append(store.IncidentEvent(v.device_id, "incident.opened", incident_id, "metric",
                                                  v.summary, details, now))
    for key, incident in open_incidents.items():
        v = verdicts.get(key)
        if v is not None and v.holds is not False:
            continue
        # back to normal, or the rule no longer applies (deleted, disabled, tag removed, device disabled)
        reason = {"resolved_because": "back to normal" if v is not None else "rule no longer applies"}
        if v is not None:
            reason["last_value"] = v.details["last_value"]
        row = await conn.fetchrow(RESOLVE_METRIC_INCIDENT, incident["id"], now, json.dumps(reason))
        if row is not None:
            resolved.append(key)
            events.append(store.IncidentEvent(row["device_id"], "incident.resolved", incident["id"], "metric",
                                              row["summary"], row["details"], now))
    await store.enqueue_incident_events(conn, events)
    return Pass(opened, resolved)


async def run_metric_rules(pool: asyncpg.Pool, stop: asyncio.Event, *, period_s: float = 10.0,
                           lookback_s: int = 900) -> None:
    """The leader's loop: one pass every `period_s`; a failed pass is logged and retried next period."""
    while not stop.is_set():
        try:
            await evaluate_rules(pool, lookback_s=lookback_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log_fields(logger, logging.WARNING, "metric rule pass failed, retrying", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=period_s)
