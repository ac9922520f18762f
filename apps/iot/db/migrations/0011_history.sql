-- Issue 14, uptime and history: time-partitioned history with retention, hourly rollups, a device-state
-- timeline for exact uptime, and a per-device SLA target.
--
-- Plain declarative partitioning (PARTITION BY RANGE on time) and PL/pgSQL only: no extension, no
-- superuser, so it runs on managed Postgres (Supabase, RDS, Cloud SQL). Partitions are named
-- <table>_pYYYYMMDD after the UTC day (or first day of the month) they start at; the worker
-- (iot.worker.partitions) creates them ahead and drops them past retention. Every partitioned table also
-- has a DEFAULT partition, so a row whose partition is missing (a worker outage) is kept, not refused;
-- history_attach_partition moves such rows into the partition when it is created.
--
--   rollups              per device, region, minute  daily partitions    RETENTION_MINUTE_DAYS (30)
--   device_metrics       raw points pushed by devices  daily partitions  RETENTION_RAW_DAYS (7)
--   rollups_hourly       per device, region, hour    monthly partitions  RETENTION_HOURLY_DAYS (400)
--   device_state_changes every state change          monthly partitions  RETENTION_HOURLY_DAYS (400)

-- Create partition `name` of `parent` for [lo, hi) unless it exists; rows of that range that landed in
-- the parent's default partition move into it first. Returns true when it created the partition.
CREATE FUNCTION history_attach_partition(parent text, name text, lo timestamptz, hi timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    key text;
BEGIN
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    SELECT a.attname INTO key
    FROM pg_partitioned_table p
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
    WHERE p.partrelid = parent::regclass;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name, parent);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) '
                   'INSERT INTO %I SELECT * FROM moved', parent || '_default', key, lo, key, hi, name);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, name, lo, hi);
    RETURN true;
END
$$;

-- --- minute rollups, partitioned by day ---------------------------------------------------------------
ALTER TABLE rollups RENAME TO rollups_0001;
ALTER TABLE rollups_0001 RENAME CONSTRAINT rollups_pkey TO rollups_0001_pkey;
ALTER TABLE rollups_0001 RENAME CONSTRAINT rollups_device_id_fkey TO rollups_0001_device_id_fkey;

CREATE TABLE rollups (
    device_id   bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    region      text NOT NULL,
    minute      timestamptz NOT NULL,
    checks      integer NOT NULL,
    failures    integer NOT NULL,
    latency_p50 real,
    latency_p95 real,
    latency_max real,
    latencies   real[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (device_id, region, minute)
) PARTITION BY RANGE (minute);
CREATE TABLE rollups_default PARTITION OF rollups DEFAULT;

-- --- raw metric points, partitioned by day ------------------------------------------------------------
ALTER TABLE device_metrics RENAME TO device_metrics_0001;
ALTER TABLE device_metrics_0001 RENAME CONSTRAINT device_metrics_device_id_fkey TO device_metrics_0001_device_id_fkey;
ALTER INDEX device_metrics_device_ts RENAME TO device_metrics_0001_device_ts;

CREATE TABLE device_metrics (
    device_id   bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    ts          timestamptz NOT NULL,
    name        text NOT NULL,
    value       double precision NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX device_metrics_device_ts ON device_metrics (device_id, ts DESC);
CREATE TABLE device_metrics_default PARTITION OF device_metrics DEFAULT;

-- --- hourly rollups, partitioned by month -------------------------------------------------------------
-- Downsampled from the minute rollups by the worker (iot.worker.downsample); percentiles are exact: they
-- come from the minute rows' raw latencies, not from averaged percentiles.
CREATE TABLE rollups_hourly (
    device_id   bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    region      text NOT NULL,
    hour        timestamptz NOT NULL,
    checks      integer NOT NULL,
    failures    integer NOT NULL,
    latency_p50 real,
    latency_p95 real,
    latency_max real,
    PRIMARY KEY (device_id, region, hour)
) PARTITION BY RANGE (hour);
CREATE TABLE rollups_hourly_default PARTITION OF rollups_hourly DEFAULT;

-- --- the device-state timeline, partitioned by month --------------------------------------------------
-- One row per change: the state entered at `at`, and the one left (`previous`), so the state at the start
-- of any range is known from the rows inside the range alone. 'maintenance' is for maintenance windows.
CREATE TABLE device_state_changes (
    tenant_id   bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    device_id   bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    state       text NOT NULL CHECK (state IN ('up', 'down', 'degraded', 'unknown', 'maintenance')),
    previous    text NOT NULL CHECK (previous IN ('up', 'down', 'degraded', 'unknown', 'maintenance'))
) PARTITION BY RANGE (at);
CREATE INDEX device_state_changes_device_at ON device_state_changes (tenant_id, device_id, at);
CREATE TABLE device_state_changes_default PARTITION OF device_state_changes DEFAULT;

-- Every writer of devices.state (evaluator, silence watch, edits) is recorded, in its own transaction.
CREATE FUNCTION devices_record_state_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_state_changes (tenant_id, device_id, at, state, previous)
    VALUES (NEW.tenant_id, NEW.id,
            CASE WHEN NEW.state_since IS DISTINCT FROM OLD.state_since THEN NEW.state_since ELSE now() END,
            NEW.state, OLD.state);
    RETURN NULL;
END
$$;
CREATE TRIGGER devices_state_timeline AFTER UPDATE OF state ON devices
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION devices_record_state_change();

-- --- SLA target per device ----------------------------------------------------------------------------
ALTER TABLE devices ADD COLUMN sla_target numeric(6, 3) CHECK (sla_target > 0 AND sla_target <= 100);

-- --- partitions for the recent past and the days ahead; existing rows move in ---------------------------
-- Daily partitions for the last 31 days (minute rollups) and 8 days (metrics), monthly ones for the last
-- 14 months; older rows go to the default partitions, which the retention job trims by the settings.
DO $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    d date;
BEGIN
    FOR d IN SELECT generate_series(today - 31, today + 3, interval '1 day')::date LOOP
        PERFORM history_attach_partition('rollups', 'rollups_p' || to_char(d, 'YYYYMMDD'),
                                         (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
    END LOOP;
    FOR d IN SELECT generate_series(today - 8, today + 3, interval '1 day')::date LOOP
        PERFORM history_attach_partition('device_metrics', 'device_metrics_p' || to_char(d, 'YYYYMMDD'),
                                         (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
    END LOOP;
    FOR d IN SELECT generate_series(month - interval '14 months', month + interval '1 month', interval '1 month')::date LOOP
        PERFORM history_attach_partition('rollups_hourly', 'rollups_hourly_p' || to_char(d, 'YYYYMMDD'),
                                         (d::timestamp AT TIME ZONE 'UTC'),
                                         ((d + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
        PERFORM history_attach_partition('device_state_changes', 'device_state_changes_p' || to_char(d, 'YYYYMMDD'),
                                         (d::timestamp AT TIME ZONE 'UTC'),
                                         ((d + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    END LOOP;
END
$$;

INSERT INTO rollups (device_id, region, minute, checks, failures, latency_p50, latency_p95, latency_max, latencies)
SELECT device_id, region, minute, checks, failures, latency_p50, latency_p95, latency_max, latencies
FROM rollups_0001;

INSERT INTO device_metrics (device_id, ts, name, value)
SELECT device_id, ts, name, value FROM device_metrics_0001;

-- The existing minute rollups, downsampled as the worker does it (the current hour is redone by the worker) (iot.worker.downsample.DOWNSAMPLE): one
-- pass, each minute row's raw latencies unnested (WITH ORDINALITY, so its checks are summed once).
INSERT INTO rollups_hourly (device_id, region, hour, checks, failures, latency_p50, latency_p95, latency_max)
SELECT r.device_id, r.region, date_trunc('hour', r.minute, 'UTC'),
       sum(r.checks) FILTER (WHERE x.n IS NULL OR x.n = 1), sum(r.failures) FILTER (WHERE x.n IS NULL OR x.n = 1),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY x.v), percentile_cont(0.95) WITHIN GROUP (ORDER BY x.v),
       max(r.latency_max)
FROM rollups_0001 r
LEFT JOIN LATERAL unnest(r.latencies) WITH ORDINALITY AS x(v, n) ON true
GROUP BY 1, 2, 3;

-- How far the downsampling job got (iot.worker.downsample): read in O(1), never max(hour) over partitions.
CREATE TABLE history_watermarks (
    job         text PRIMARY KEY,
    done_until  timestamptz NOT NULL
);
INSERT INTO history_watermarks (job, done_until) VALUES ('downsample', date_trunc('hour', now(), 'UTC'));

DROP TABLE rollups_0001;
DROP TABLE device_metrics_0001;

-- The timeline starts with each device's current state, entered at state_since (unknown before: no data).
INSERT INTO device_state_changes (tenant_id, device_id, at, state, previous)
SELECT tenant_id, id, state_since, state, 'unknown' FROM devices WHERE state <> 'unknown';
