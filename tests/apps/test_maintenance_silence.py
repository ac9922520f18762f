"""Maintenance windows for push devices: the silence watch records a silent device as down inside a window
but opens no incident and queues no notification; once the window is over, still silent, it does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iot import db
from iot.db.migrate import migrate
from iot.worker.maintenance import MaintenanceCache
from iot.worker.silence import check_silence


async def test_a_silent_push_device_in_maintenance_alerts_only_after_the_window(database_url: str):
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) "
                                 "VALUES ('acme', 'h', 'http://127.0.0.1:9/hook', 'secret') RETURNING id")
    quiet, outside = [r["id"] for r in await pool.fetch(
        "INSERT INTO devices (tenant_id, name, kind, interval_s, grace_s, last_seen_at, state, tags) "
        "VALUES ($1, 'meter-in', 'push', 10, 30, now() - interval '45 seconds', 'up', '{site/berlin}'), "
        "       ($1, 'meter-out', 'push', 10, 30, now() - interval '45 seconds', 'up', '{}') RETURNING id", tenant)]
    start = datetime.now(UTC) - timedelta(minutes=5)
    window = await pool.fetchval(
        "INSERT INTO maintenance_windows (tenant_id, scope, tag, reason, starts_at, ends_at) "
        "VALUES ($1, 'tag', 'site/berlin', 'Meter swap', $2, $3) RETURNING id", tenant, start,
        start + timedelta(hours=1))
    cache = MaintenanceCache(pool, refresh_seconds=0)

    changes = await check_silence(pool, cache)
    assert sorted((c.device_id, c.state, c.incident_kind) for c in changes) == [
        (quiet, "down", None), (outside, "down", "silent")]
    assert [r["device_id"] for r in await pool.fetch("SELECT device_id FROM incidents")] == [outside]
    sent = await pool.fetch("SELECT payload FROM webhook_deliveries")
    assert [r["payload"]["device"]["id"] for r in sent] == [outside]
    assert await check_silence(pool, cache) == []  # still in the window: nothing

    await pool.execute("DELETE FROM maintenance_windows WHERE id = $1", window)
    changes = await check_silence(pool, cache)
    assert [(c.device_id, c.state, c.incident_kind) for c in changes] == [(quiet, "down", "silent")]
    incident = await pool.fetchrow("SELECT id, summary FROM incidents WHERE device_id = $1", quiet)
    assert "still silent after a maintenance window ended" in incident["summary"]
    events = await pool.fetch("SELECT kind, text FROM incident_events WHERE incident_id = $1 ORDER BY at, id",
                              incident["id"])
    assert [(e["kind"], e["text"]) for e in events] == [
        ("suppressed", "alert held back by a maintenance window"), ("opened", incident["summary"])]
    sent = await pool.fetch("SELECT event_type, payload FROM webhook_deliveries ORDER BY id")
    assert [(r["event_type"], r["payload"]["device"]["id"]) for r in sent] == [
        ("device.state_changed", outside), ("incident.opened", quiet)]
    assert await check_silence(pool, cache) == []  # once
    await pool.close()


async def test_a_push_device_heard_again_inside_its_window_recovers_without_a_notification(database_url: str):
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) "
                                 "VALUES ('acme', 'h', 'http://127.0.0.1:9/hook', 'secret') RETURNING id")
    meter = await pool.fetchval(
        "INSERT INTO devices (tenant_id, name, kind, interval_s, grace_s, last_seen_at, state) "
        "VALUES ($1, 'meter', 'push', 10, 30, now() - interval '45 seconds', 'up') RETURNING id", tenant)
    start = datetime.now(UTC) - timedelta(minutes=5)
    await pool.execute("INSERT INTO maintenance_windows (tenant_id, scope, device_id, reason, starts_at, ends_at) "
                       "VALUES ($1, 'device', $2, 'Battery change', $3, $4)", tenant, meter, start,
                       start + timedelta(hours=1))
    cache = MaintenanceCache(pool, refresh_seconds=0)
    assert [(c.state, c.incident_kind) for c in await check_silence(pool, cache)] == [("down", None)]
    await pool.execute("UPDATE devices SET last_seen_at = now() WHERE id = $1", meter)  # a heartbeat arrives
    assert [(c.state, c.notify) for c in await check_silence(pool, cache)] == [("up", False)]
    assert await pool.fetchval("SELECT state FROM devices WHERE id = $1", meter) == "up"
    assert await pool.fetchval("SELECT count(*) FROM incidents") == 0
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
    await pool.close()


async def test_the_worker_cache_never_lets_one_tenants_window_cover_another_tenants_devices(database_url: str):
    """Tenant and tag windows cover only their own tenant's devices, even when another tenant uses the same tag."""
    import time

    await migrate(database_url)
    pool = await db.create_pool(database_url)
    a, b = [r["id"] for r in await pool.fetch(
        "INSERT INTO tenants (slug, api_key_hash) VALUES ('a', 'h1'), ('b', 'h2') RETURNING id")]
    a_dev, b_dev = [await pool.fetchval(
        "INSERT INTO devices (tenant_id, name, kind, target, tags) VALUES ($1, 'x', 'icmp', '10.0.0.1', "
        "'{site/berlin}') RETURNING id", t) for t in (a, b)]
    start = datetime.now(UTC) - timedelta(minutes=1)
    for scope, tag in (("tenant", None), ("tag", "site/berlin")):
        await pool.execute("INSERT INTO maintenance_windows (tenant_id, scope, tag, reason, starts_at, ends_at) "
                           "VALUES ($1, $2, $3, 'mine', $4, $5)", a, scope, tag, start, start + timedelta(hours=1))
    cache = MaintenanceCache(pool)
    await cache.refresh()
    now = time.time()
    assert cache.covering(a, a_dev, now) is not None
    assert cache.covering(b, b_dev, now) is None
    assert cache.covering(b, a_dev, now) is None  # even asked with the wrong tenant
    assert cache.covering(a, a_dev, now + 2 * 3600) is None  # over in an hour
    await pool.close()
