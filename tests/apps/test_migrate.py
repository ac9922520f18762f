"""`iot migrate`: versioned, idempotent, safe when two processes run it at once."""

from __future__ import annotations

import asyncpg

from iot.db.migrate import available_migrations, migrate


async def test_migrate_applies_every_version_once(database_url: str) -> None:
    versions = [v for v, _ in available_migrations()]
    assert versions and versions[0] == "0001_init"

    assert await migrate(database_url) == versions
    assert await migrate(database_url) == []  # idempotent

    conn = await asyncpg.connect(database_url)
    try:
        recorded = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    finally:
        await conn.close()
    assert recorded == versions
    assert {"tenants", "devices", "device_region_state", "incidents", "rollups", "device_metrics",
            "webhook_deliveries", "regions"} <= tables


def test_two_concurrent_migrate_processes(database_url: str, start_iot) -> None:
    """Both exit 0, exactly one applies the schema, and it is applied exactly once."""
    runs = [start_iot("migrate", DATABASE_URL=database_url, LOG_LEVEL="info") for _ in range(2)]
    codes = [run.proc.wait(60) for run in runs]
    logs = [run.log() for run in runs]
    assert codes == [0, 0], logs

    applied_logs = [log.count('"migration applied"') for log in logs]
    assert sorted(applied_logs) == [0, len(available_migrations())], logs

    import asyncio

    async def count_versions() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM schema_migrations")
        finally:
            await conn.close()

    assert asyncio.run(count_versions()) == len(available_migrations())


def test_migrate_reports_unreachable_database(start_iot) -> None:
    run = start_iot("migrate", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert run.proc.wait(120) == 1  # migrate itself gives up after 60 s of retries: leave it room
    assert "migration failed" in run.log() and "DATABASE_URL" in run.log()


