-- Issue 15: free-form device tags ("env:prod", "site/berlin"), many per device, for filters and, later,
-- routing rules, status pages and maintenance windows.
--
-- A text[] column with a GIN index, not a join table: the list filter "has all of these tags" is one
-- `tags @> $n` that the GIN index answers (bitmap-ANDed with the tenant's rows) without a join or a
-- GROUP BY ... HAVING count per page; the device list and detail read the tags from the row they already
-- read; and a bulk create of 1,000 devices stays one INSERT. At 20 tags per device the array is small.
-- The per-tenant tag counts (GET /v1/tags) unnest the tenant's rows (one pass over its devices).
--
-- The DEFAULT is a constant, so Postgres adds the column without rewriting the table: existing devices
-- get no tags at once. Bounds and characters are checked in apps/iot/inputs.py; the count is also here.
ALTER TABLE devices ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD CONSTRAINT devices_tags_check CHECK (cardinality(tags) <= 20);
CREATE INDEX devices_tags_idx ON devices USING gin (tags);
