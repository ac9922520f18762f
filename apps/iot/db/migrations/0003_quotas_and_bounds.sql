-- Per-tenant quota overrides, version 3. A NULL column means "the service default" (QUOTA_* settings);
-- set them with PUT /v1/tenants/{slug}/quotas (admin token) or directly in SQL.
CREATE TABLE tenant_quotas (
    tenant_id          bigint PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    max_devices        integer CHECK (max_devices >= 0),          -- devices the tenant may have
    checks_per_second  real CHECK (checks_per_second >= 0),       -- sum of 1/interval_s of enabled checked devices
    points_per_second  real CHECK (points_per_second >= 0),       -- metric points (and heartbeats) per second
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The length limits of apps/iot/inputs.py, also in the schema: a write path that skips validation still
-- cannot store an 8 MiB target. NOT VALID: rows written before these limits stay (and are still read).
ALTER TABLE devices ADD CONSTRAINT devices_name_check CHECK (char_length(name) <= 200) NOT VALID;
ALTER TABLE devices ADD CONSTRAINT devices_target_check CHECK (char_length(target) <= 2048) NOT VALID;
ALTER TABLE tenants ADD CONSTRAINT tenants_name_check CHECK (char_length(name) <= 200) NOT VALID;
ALTER TABLE tenants ADD CONSTRAINT tenants_webhook_url_check CHECK (char_length(webhook_url) <= 2048) NOT VALID;
ALTER TABLE tenants ADD CONSTRAINT tenants_webhook_secret_check CHECK (char_length(webhook_secret) <= 200) NOT VALID;
