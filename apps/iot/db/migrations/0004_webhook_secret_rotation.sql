-- Webhook secret rotation (issue 12): after a tenant changes its webhook secret, deliveries carry a
-- signature under the previous secret too, until webhook_secret_previous_until, so receivers can switch
-- their secret without rejecting a single event.
ALTER TABLE tenants
    ADD COLUMN webhook_secret_previous       text,
    ADD COLUMN webhook_secret_previous_until timestamptz;
