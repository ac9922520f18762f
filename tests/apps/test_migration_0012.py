"""Migration 0012 (issue 15): points stored before it get their minute rollups and latest values (last 30
days), astronomic values included; an open state incident and the new metric incidents coexist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from iot.db.migrate import available_migrations, migrate


async def test_0012_backfills_rollups_and_latest_values(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        for version, sql in available_migrations():
            if version >= "0012":
                break
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        tenant = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('old', 'h') RETURNING id")
        device = await conn.fetchval("INSERT INTO devices (tenant_id, name, kind) VALUES ($1, 'd', 'push') "
                                     "RETURNING id", tenant)
        minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        rows = [(minute + timedelta(seconds=10), "t", 2.0), (minute + timedelta(seconds=50), "t", 4.0),
                (minute + timedelta(seconds=30), "t", 9.0), (minute + timedelta(minutes=1), "t", 1.0),
                (minute, "huge", 1.7e308), (minute + timedelta(seconds=1), "huge", 1.7e308),
                (minute - timedelta(days=40), "ancient", 5.0)]
        await conn.executemany("INSERT INTO device_metrics (device_id, ts, name, value) VALUES ($1, $2, $3, $4)",
                               [(device, *r) for r in rows])
        await conn.execute("INSERT INTO incidents (tenant_id, device_id, kind, summary) VALUES ($1, $2, 'silent', 's')",
                           tenant, device)
        assert "0012_metric_rules" in await migrate(database_url)
        rollups = [tuple(r) for r in await conn.fetch(
            "SELECT name, minute, count, sum, sum_sq, min, max, last FROM metric_rollups ORDER BY name, minute")]
        latest = [tuple(r) for r in await conn.fetch("SELECT name, value FROM metric_latest ORDER BY name")]
        await conn.execute("INSERT INTO incidents (tenant_id, device_id, kind, summary, details) "
                           "VALUES ($1, $2, 'metric', 'm', '{\"rule_id\": 1}')", tenant, device)
        assert await conn.fetchval("SELECT count(*) FROM incidents WHERE resolved_at IS NULL") == 2
    finally:
        await conn.close()
    inf = float("inf")
    assert rollups == [
        ("huge", minute, 2, inf, inf, 1.7e308, 1.7e308, 1.7e308),
        ("t", minute, 3, 15.0, 101.0, 2.0, 9.0, 4.0),
        ("t", minute + timedelta(minutes=1), 1, 1.0, 1.0, 1.0, 1.0, 1.0),
    ]
    assert latest == [("huge", 1.7e308), ("t", 1.0)]  # nothing of the point 40 days old
