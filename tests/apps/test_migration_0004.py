"""Migration 0004 (issue 12): webhook secret rotation columns, and error texts that may quote what a
target or receiver sent (written before errors were fixed strings) replaced in existing rows."""

from __future__ import annotations

import asyncpg

from iot.db.migrate import available_migrations, migrate

LEAKED = ("not an HTTP status line: b'SSH-2.0-OpenSSH_9.2p1'",
          "ClientResponseError: 400, message=\"Bad status line: b'-ERR unknown command'\"")
FIXED = ("timeout after 5s", "Connection refused", "HTTP 503")


async def test_0004_replaces_error_texts_that_may_quote_received_bytes(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        for version, sql in available_migrations():
            if version >= "0004":
                break
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        tenant = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('old', 'h') RETURNING id")
        device = await conn.fetchval("INSERT INTO devices (tenant_id, name, kind, target) "
                                     "VALUES ($1, 'd', 'http', 'http://192.0.2.1/') RETURNING id", tenant)
        for n, error in enumerate(LEAKED + FIXED):
            await conn.execute("INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload, last_error) "
                               "VALUES ($1, $2, 'device.state_changed', '{}', $3)", tenant, f"e{n}", error)
            await conn.execute("INSERT INTO device_region_state (device_id, region, last_error) VALUES ($1, $2, $3)",
                               device, f"r{n}", error)
        assert "0004_webhooks_and_fixed_errors" in await migrate(database_url)
        deliveries = [r["last_error"] for r in await conn.fetch("SELECT last_error FROM webhook_deliveries ORDER BY id")]
        regions = [r["last_error"] for r in await conn.fetch("SELECT last_error FROM device_region_state ORDER BY region")]
        columns = {r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'tenants'")}
    finally:
        await conn.close()
    assert deliveries == regions == ["request failed"] * len(LEAKED) + list(FIXED)
    assert {"webhook_secret_previous", "webhook_secret_previous_until"} <= columns
