-- Issue 15, IoT metrics: per-minute metric rollups for charts, and threshold / anomaly rules on pushed metrics
-- that open and resolve incidents of kind 'metric'.

-- One row per device, metric name and minute, upserted by the ingest writer in the transaction that stores the
-- points (apps/iot/tracker/ingest.py), so charts over a day or a month never scan raw points. `sum_sq` makes the
-- mean and variance over any span exact (anomaly baselines); `last_ts` orders late points for `last`.
CREATE TABLE metric_rollups (
    device_id   bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name        text NOT NULL,
    minute      timestamptz NOT NULL,
    count       integer NOT NULL,
    sum         double precision NOT NULL,
    sum_sq      double precision NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    last        double precision NOT NULL,
    last_ts     timestamptz NOT NULL,
    PRIMARY KEY (device_id, name, minute)
);

-- The newest value of each metric of each device (device page, device list columns), upserted with the points.
CREATE TABLE metric_latest (
    device_id   bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name        text NOT NULL,
    value       double precision NOT NULL,
    ts          timestamptz NOT NULL,
    PRIMARY KEY (device_id, name)
);

-- A rule watches one metric on one device, or on every device carrying a tag (never both).
--   threshold: value <operator> threshold
--   anomaly:   |value - baseline mean| > z_score * baseline stddev (baseline: the day before, from rollups)
-- The condition must hold on every point for `for_s` seconds (0: the first point) before an incident opens;
-- the incident resolves on the first point where it no longer holds.
CREATE TABLE metric_rules (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    device_id   bigint REFERENCES devices(id) ON DELETE CASCADE,
    tag         text CHECK (char_length(tag) <= 50),
    metric      text NOT NULL CHECK (char_length(metric) BETWEEN 1 AND 200),
    kind        text NOT NULL DEFAULT 'threshold' CHECK (kind IN ('threshold', 'anomaly')),
    operator    text CHECK (operator IN ('>', '>=', '<', '<=', '==', '!=')),
    threshold   double precision,
    z_score     double precision CHECK (z_score > 0 AND z_score <= 100),
    for_s       integer NOT NULL DEFAULT 0 CHECK (for_s BETWEEN 0 AND 86400),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((device_id IS NULL) <> (tag IS NULL)),
    CHECK (kind <> 'threshold' OR (operator IS NOT NULL AND threshold IS NOT NULL)),
    CHECK (kind <> 'anomaly' OR z_score IS NOT NULL)
);
CREATE INDEX metric_rules_tenant ON metric_rules (tenant_id, id);
CREATE INDEX metric_rules_enabled ON metric_rules (id) WHERE enabled;
CREATE INDEX metric_rules_device ON metric_rules (device_id) WHERE device_id IS NOT NULL;

-- Rule passes and the hour chart read one metric of one device over a time span: exact with the name in the key
-- (the (device_id, ts) index would also read every other metric the device pushed in that span).
-- IF NOT EXISTS: on a large table, build it first by hand without blocking ingest (CREATE INDEX CONCURRENTLY
-- device_metrics_device_name_ts ...), then migrate.
CREATE INDEX IF NOT EXISTS device_metrics_device_name_ts ON device_metrics (device_id, name, ts DESC);

-- Points stored before this migration: rollups and latest values of the last 30 days (the longest chart), so
-- charts and anomaly baselines do not start empty. Sums in numeric (no float overflow on astronomic values);
-- beyond 1e300 stored as infinite, as the ingest writer does.
INSERT INTO metric_rollups (device_id, name, minute, count, sum, sum_sq, min, max, last, last_ts)
SELECT device_id, name, minute, n,
       CASE WHEN abs(s) > 1e300 THEN sign(s)::float8 * 'Infinity'::float8 ELSE s::float8 END,
       CASE WHEN sq > 1e300 THEN 'Infinity'::float8 ELSE sq::float8 END,
       lo, hi, last_value, last_ts
FROM (SELECT device_id, name, date_trunc('minute', ts) AS minute, count(*) AS n, sum(value::numeric) AS s,
             sum(value::numeric * value::numeric) AS sq, min(value) AS lo, max(value) AS hi,
             (array_agg(value ORDER BY ts DESC))[1] AS last_value, max(ts) AS last_ts
      FROM device_metrics WHERE ts > now() - interval '30 days'
      GROUP BY 1, 2, 3) g;
INSERT INTO metric_latest (device_id, name, value, ts)
SELECT DISTINCT ON (device_id, name) device_id, name, value, ts
FROM device_metrics WHERE ts > now() - interval '30 days'
ORDER BY device_id, name, ts DESC;

-- Incidents of kind 'metric' carry their rule in details.rule_id. A device may have one open state incident
-- (down/degraded/silent) and, besides it, one open incident per metric rule.
ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_check CHECK (kind IN ('down', 'degraded', 'silent', 'metric'));
ALTER TABLE incidents ADD CONSTRAINT incidents_metric_rule_check
    CHECK (kind <> 'metric' OR details ? 'rule_id') NOT VALID;
DROP INDEX incidents_one_open;
CREATE UNIQUE INDEX incidents_one_open ON incidents (device_id) WHERE resolved_at IS NULL AND kind <> 'metric';
CREATE UNIQUE INDEX incidents_one_open_metric ON incidents (device_id, ((details->>'rule_id')::bigint))
    WHERE resolved_at IS NULL AND kind = 'metric';
