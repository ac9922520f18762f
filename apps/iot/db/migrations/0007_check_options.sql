-- Issue 15 (richer checks): per-kind options, per-device retries, and the dns and tls kinds.
--
-- `options` holds what the kind's model (apps/iot/checks/<kind>.py) accepted, defaults left out, so most
-- devices keep '{}' and their check batch entries stay as short as before. A constant DEFAULT: no table
-- rewrite. The size bound backs the models' own limits (8 KiB of request body, 4 KiB of headers, which
-- grow by about a half and 100 bytes per header when sealed).
-- `retries`: consecutive failed checks before a region counts as failing; NULL = FAILURES_TO_DOWN.
-- The kind list must equal iot.checks.KINDS (tests/apps/test_check_kinds.py holds them together).
ALTER TABLE devices ADD COLUMN options jsonb NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD CONSTRAINT devices_options_check
    CHECK (jsonb_typeof(options) = 'object' AND octet_length(options::text) <= 65536);
ALTER TABLE devices ADD COLUMN retries integer CHECK (retries IS NULL OR retries BETWEEN 1 AND 20);
ALTER TABLE devices DROP CONSTRAINT devices_kind_check;
ALTER TABLE devices ADD CONSTRAINT devices_kind_check
    CHECK (kind IN ('http', 'tcp', 'icmp', 'push', 'dns', 'tls'));
