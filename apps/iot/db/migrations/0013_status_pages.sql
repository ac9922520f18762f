-- Issue 14: public status pages. A tenant publishes pages at https://<tenant>.<domain>/status/<slug>
-- listing chosen devices and/or every device carrying chosen tags ("components").
--
-- Components are kept as two arrays on the page (at most 1,000 entries together; the API also caps the
-- devices they resolve to): a device id cannot carry a foreign key inside an array, so a deleted device
-- simply drops out when the page is read (every read joins devices on tenant_id and id).
-- `custom_domain` is stored and validated as a host name only; it is not served yet (for later, once its
-- ownership can be verified), so it is not unique across tenants.
--
-- Speed: a page of 500 components computes 90-day daily uptime for each (about 3 ms per device in
-- Python). Rather than a daily table kept by the worker (a second copy of the state timeline that must be
-- rebuilt whenever a maintenance window is added, changed or removed, since windows are excluded
-- retroactively), the rendered page is cached in Redis for the Cache-Control max-age (30 s): what a
-- visitor sees is then at most as old as what a browser or proxy is already allowed to keep, and an edit of
-- the page drops its cache entry at once (apps/iot/status_pages.py).
CREATE TABLE status_pages (
    id            bigserial PRIMARY KEY,
    tenant_id     bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    slug          text NOT NULL CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    logo_url      text CHECK (length(logo_url) <= 2048 AND logo_url LIKE 'https://%'),
    custom_domain text CHECK (length(custom_domain) <= 253),
    device_ids    bigint[] NOT NULL DEFAULT '{}',
    tags          text[] NOT NULL DEFAULT '{}',
    published     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(device_ids) + cardinality(tags) <= 1000),
    UNIQUE (tenant_id, slug)
);
