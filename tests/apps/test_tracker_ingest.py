"""The tracker's group-commit metric writer against real Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from iot.repo import devices, tenants
from iot.repo.devices import DeviceSpec
from iot.tracker.ingest import IngestUnavailable, MetricWriter


async def two_devices(pool: asyncpg.Pool) -> list[int]:
    tenant, _ = await tenants.create_tenant(pool, "ingest")
    created = await devices.create_devices(pool, tenant.id, [DeviceSpec("a", "push"), DeviceSpec("b", "push")])
    return [c.id for c in created]


async def test_concurrent_writes_share_a_batch_and_a_deleted_device_does_not_sink_it(pool) -> None:
    keep, gone = await two_devices(pool)
    tenant_id = await pool.fetchval("SELECT tenant_id FROM devices WHERE id = $1", keep)
    assert await devices.delete_device(pool, tenant_id, gone)
    writer = MetricWriter(pool)
    writer.start()
    now = datetime.now(UTC)
    points = [(now - timedelta(seconds=i), "v", float(i)) for i in range(100)]
    try:
        stored = await asyncio.gather(writer.write(keep, points, now), writer.write(gone, points, now))
    finally:
        await writer.stop()
    assert stored == [100, 0]
    assert await pool.fetchval("SELECT count(*) FROM device_metrics WHERE device_id = $1", keep) == 100
    assert await pool.fetchval("SELECT last_seen_at FROM devices WHERE id = $1", keep) == now


async def test_database_failure_is_reported_to_every_waiter(pool) -> None:
    keep, other = await two_devices(pool)
    writer = MetricWriter(pool)
    writer.start()
    now = datetime.now(UTC)
    # Not a value Postgres refuses (that fails only its own submission) but the table itself gone.
    await pool.execute("ALTER TABLE device_metrics RENAME TO device_metrics_away")
    try:
        results = await asyncio.gather(writer.write(keep, [(now, "v", -1.0)], now),
                                       writer.write(other, [(now, "v", 1.0)], now), return_exceptions=True)
    finally:
        await writer.stop()
        await pool.execute("ALTER TABLE device_metrics_away RENAME TO device_metrics")
    assert all(isinstance(r, IngestUnavailable) for r in results), results
    assert await pool.fetchval("SELECT count(*) FROM device_metrics") == 0
