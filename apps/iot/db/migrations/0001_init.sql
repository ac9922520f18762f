-- my-iot-app schema, version 1. Applied by `iot migrate` inside one transaction under an advisory lock.

CREATE TABLE tenants (
    id              bigserial PRIMARY KEY,
    slug            text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name            text NOT NULL DEFAULT '',
    api_key_hash    text NOT NULL UNIQUE,          -- sha256 hex of the API key; the key itself is never stored
    webhook_url     text,
    webhook_secret  text,                          -- HMAC key for webhook signatures (shown to the tenant)
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('http', 'tcp', 'icmp', 'push')),
    target          text,                          -- http: URL; tcp: host:port; icmp: host; push: NULL
    interval_s      integer NOT NULL DEFAULT 60 CHECK (interval_s BETWEEN 5 AND 86400),
    timeout_ms      integer NOT NULL DEFAULT 5000 CHECK (timeout_ms BETWEEN 100 AND 60000),
    grace_s         integer CHECK (grace_s IS NULL OR grace_s BETWEEN 5 AND 604800),  -- push: allowed silence
    parent_id       bigint REFERENCES devices(id) ON DELETE SET NULL,
    enabled         boolean NOT NULL DEFAULT true,
    token_hash      text UNIQUE,                   -- sha256 hex of the device's ingest token
    -- latency anomaly thresholds (NULL = service defaults)
    anomaly_factor  real,                          -- latency above mean + factor * stddev counts as slow
    anomaly_min_ms  real,                          -- ... and at least this many ms above the mean
    anomaly_checks  integer,                       -- slow checks in a row before `degraded`
    state           text NOT NULL DEFAULT 'unknown' CHECK (state IN ('up', 'down', 'degraded', 'unknown')),
    state_since     timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz,                   -- push devices: last metric or heartbeat
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    CHECK (kind = 'push' OR target IS NOT NULL),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX devices_tenant_state ON devices (tenant_id, state, id);
CREATE INDEX devices_parent ON devices (parent_id) WHERE parent_id IS NOT NULL;

-- Latest view of each device from each region.
CREATE TABLE device_region_state (
    device_id            bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    region               text NOT NULL,
    state                text NOT NULL DEFAULT 'unknown' CHECK (state IN ('up', 'down', 'degraded', 'unknown')),
    last_ok              boolean,
    last_latency_ms      real,
    last_error           text,
    last_checked_at      timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    latency_mean_ms      real,                     -- EWMA baseline
    latency_var_ms2      real,
    samples              integer NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, region)
);

-- Monitor regions as the worker sees them.
CREATE TABLE regions (
    name             text PRIMARY KEY,
    healthy          boolean NOT NULL DEFAULT true,
    reason           text,
    last_heartbeat_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE incidents (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    device_id       bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('down', 'degraded', 'silent')),
    summary         text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    cause_device_id bigint REFERENCES devices(id) ON DELETE SET NULL,  -- parent blamed instead of the device
    opened_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz
);
-- At most one open incident per device: a retried or restarted evaluator can never open a duplicate.
CREATE UNIQUE INDEX incidents_one_open ON incidents (device_id) WHERE resolved_at IS NULL;
CREATE INDEX incidents_tenant_opened ON incidents (tenant_id, opened_at DESC);

-- Per-minute rollups of raw check results, per device and region.
CREATE TABLE rollups (
    device_id   bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    region      text NOT NULL,
    minute      timestamptz NOT NULL,
    checks      integer NOT NULL,
    failures    integer NOT NULL,
    latency_p50 real,
    latency_p95 real,
    latency_max real,
    PRIMARY KEY (device_id, region, minute)
);

-- Metric points pushed by devices (POST /v1/metrics), written in batches.
CREATE TABLE device_metrics (
    device_id   bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    ts          timestamptz NOT NULL,
    name        text NOT NULL,
    value       double precision NOT NULL
);
CREATE INDEX device_metrics_device_ts ON device_metrics (device_id, ts DESC);

-- Durable webhook queue and delivery history.
CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    tenant_id        bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    event_id         text NOT NULL UNIQUE,          -- idempotency key, also sent to the receiver
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, created_at DESC);
