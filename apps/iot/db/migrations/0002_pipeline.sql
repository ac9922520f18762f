-- Pipeline (worker evaluator) additions, version 2.

-- Slow checks in a row per device and region (latency anomaly detection survives a worker failover).
ALTER TABLE device_region_state ADD COLUMN slow_streak integer NOT NULL DEFAULT 0;

-- Raw latencies of the minute, so rollups written in several batches still get exact p50/p95
-- (percentiles cannot be merged from partial percentiles). At most 60 / interval_s values per row.
ALTER TABLE rollups ADD COLUMN latencies real[] NOT NULL DEFAULT '{}';
