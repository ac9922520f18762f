-- Webhook secret rotation (issue 12): after a tenant changes its webhook secret, deliveries carry a
-- signature under the previous secret too, until webhook_secret_previous_until, so receivers can switch
-- their secret without rejecting a single event.
ALTER TABLE tenants
    ADD COLUMN webhook_secret_previous       text,
    ADD COLUMN webhook_secret_previous_until timestamptz;

-- Error texts are fixed strings from now on (iot.failures). Texts written before may quote what a target
-- or receiver sent (a banner, a status line, an aiohttp message with the bytes): replace them.
UPDATE webhook_deliveries SET last_error = 'request failed'
WHERE last_error LIKE '%: %' OR last_error LIKE 'not an HTTP status line%';
UPDATE device_region_state SET last_error = 'request failed'
WHERE last_error LIKE '%: %' OR last_error LIKE 'not an HTTP status line%';
