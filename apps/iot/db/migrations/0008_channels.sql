-- Issue 14: notification channels per tenant (e-mail, Slack, Teams, Discord, Telegram, PagerDuty, Opsgenie,
-- ntfy, Pushover, any Apprise URL, the signed webhook), each with the events it wants and a routing rule.
--
-- config_sealed holds the channel's whole configuration (URLs carry tokens) as a Fernet token under
-- SECRETS_KEY (iot.sealed); config_shown is what the API and dashboard may show (tokens masked).
-- Routing is a column, not a rule table: one rule per channel ("all devices", "devices with any of these
-- tags", "these devices") is what users pick, and the fan-out in the state-change transaction stays one
-- join (`d.tags && route_tags` uses the GIN index of migration 0006 on the device side).
CREATE TABLE channels (
    id               bigserial PRIMARY KEY,
    tenant_id        bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name             text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    kind             text NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 30),
    config_sealed    text NOT NULL,
    config_shown     jsonb NOT NULL DEFAULT '{}',
    events           text[] NOT NULL DEFAULT '{down,up,degraded,silent,metric}'
                     CHECK (events <@ '{down,up,degraded,silent,metric,region_unhealthy}'::text[]),
    route            text NOT NULL DEFAULT 'all' CHECK (route IN ('all', 'tags', 'devices')),
    route_tags       text[] NOT NULL DEFAULT '{}' CHECK (cardinality(route_tags) <= 20),
    route_device_ids bigint[] NOT NULL DEFAULT '{}' CHECK (cardinality(route_device_ids) <= 1000),
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX channels_tenant ON channels (tenant_id) WHERE enabled;

-- One outbox for every channel: a row per (event, channel). NULL channel_id is the tenant's legacy webhook
-- (tenants.webhook_url), delivered exactly as before. The same event goes to several channels, so the
-- idempotency key becomes (event_id, channel_id); NULLS NOT DISTINCT keeps one legacy row per event.
ALTER TABLE webhook_deliveries ADD COLUMN channel_id bigint REFERENCES channels(id) ON DELETE CASCADE;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_id_key;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_channel_key
    UNIQUE NULLS NOT DISTINCT (event_id, channel_id);
CREATE INDEX webhook_deliveries_channel ON webhook_deliveries (channel_id, id DESC) WHERE channel_id IS NOT NULL;
