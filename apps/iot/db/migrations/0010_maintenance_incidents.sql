-- Issue 14: maintenance windows, and incidents with a timeline and an acknowledgement.
--
-- A window covers the whole tenant, the devices carrying one tag, or one device. Its first occurrence
-- is [starts_at, ends_at); `rrule` (an RFC 5545 RRULE, DTSTART = starts_at, expanded with dateutil in
-- apps/iot/maintenance.py) repeats it with the same duration. During an occurrence checks keep running
-- and states are stored, but the worker opens no incident and queues no notification for the devices
-- covered. `pinned` windows are shown first (status pages, dashboard). Bounds are checked in the API
-- (apps/iot/maintenance.py); the checks here are the last line.
CREATE TABLE maintenance_windows (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    scope       text NOT NULL CHECK (scope IN ('tenant', 'tag', 'device')),
    tag         text CHECK (length(tag) <= 50),
    device_id   bigint REFERENCES devices(id) ON DELETE CASCADE,
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    rrule       text CHECK (length(rrule) <= 500),
    pinned      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK ((scope = 'tag') = (tag IS NOT NULL)),
    CHECK ((scope = 'device') = (device_id IS NOT NULL))
);
CREATE INDEX maintenance_windows_tenant ON maintenance_windows (tenant_id, starts_at);
CREATE INDEX maintenance_windows_device ON maintenance_windows (device_id) WHERE device_id IS NOT NULL;

-- Who acknowledged an open incident (the dashboard or an API caller names itself) and when.
ALTER TABLE incidents ADD COLUMN acknowledged_by text CHECK (length(acknowledged_by) <= 200);
ALTER TABLE incidents ADD COLUMN acknowledged_at timestamptz;

-- The timeline of an incident: written by the worker (opened, suppressed, resolved) in the transaction
-- that changes the incident, and by people (acknowledged, note). Notifications sent are read from their
-- delivery rows (apps/iot/repo/incidents.py) until channels write `notified` events themselves.
CREATE TABLE incident_events (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    incident_id bigint NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL CHECK (kind IN ('opened', 'notified', 'acknowledged', 'note', 'resolved',
                                              'suppressed')),
    actor       text NOT NULL DEFAULT 'system' CHECK (length(actor) BETWEEN 1 AND 200),
    text        text NOT NULL DEFAULT '' CHECK (length(text) <= 2000)
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, at, id);
-- The incidents list filters by kind and state within a tenant.
CREATE INDEX incidents_tenant_kind ON incidents (tenant_id, kind, id DESC);
