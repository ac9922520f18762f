"""Push devices go down when silent past their grace time, and up on the next arrival."""

from __future__ import annotations

from iot import db
from iot.db.migrate import migrate
from iot.worker.silence import check_silence


async def test_silent_push_device_goes_down_with_an_incident_and_comes_back(database_url: str):
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('acme', 'h') RETURNING id")
    quiet = await pool.fetchval(
        "INSERT INTO devices (tenant_id, name, kind, interval_s, grace_s, last_seen_at) "
        "VALUES ($1, 'quiet', 'push', 10, 30, now() - interval '45 seconds') RETURNING id", tenant)
    chatty = await pool.fetchval(
        "INSERT INTO devices (tenant_id, name, kind, interval_s, last_seen_at, state) "
        "VALUES ($1, 'chatty', 'push', 10, now() - interval '5 seconds', 'up') RETURNING id", tenant)
    # never heard from: grace (3 intervals = 30 s) counts from creation
    fresh = await pool.fetchval(
        "INSERT INTO devices (tenant_id, name, kind, interval_s) VALUES ($1, 'fresh', 'push', 10) RETURNING id",
        tenant)

    changes = await check_silence(pool)
    assert [(c.device_id, c.state) for c in changes] == [(quiet, "down")]
    states = {r["id"]: r["state"] for r in await pool.fetch("SELECT id, state FROM devices")}
    assert states == {quiet: "down", chatty: "up", fresh: "unknown"}
    incident = await pool.fetchrow("SELECT kind, summary, resolved_at FROM incidents WHERE device_id = $1", quiet)
    assert incident["kind"] == "silent" and "grace 30 s" in incident["summary"] and incident["resolved_at"] is None
    assert await check_silence(pool) == []  # still silent: no second incident

    await pool.execute("UPDATE devices SET last_seen_at = now() WHERE id = $1", quiet)  # a heartbeat arrives
    changes = await check_silence(pool)
    assert [(c.device_id, c.state) for c in changes] == [(quiet, "up")]
    assert await pool.fetchval("SELECT resolved_at FROM incidents WHERE device_id = $1", quiet) is not None
    assert await pool.fetchval("SELECT count(*) FROM incidents") == 1
    await pool.close()


async def test_first_heartbeat_of_a_new_push_device_makes_it_up_not_down(database_url: str):
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('acme', 'h') RETURNING id")
    new = await pool.fetchval(
        "INSERT INTO devices (tenant_id, name, kind, interval_s, grace_s, last_seen_at) "
        "VALUES ($1, 'new', 'push', 10, 30, now()) RETURNING id", tenant)
    changes = await check_silence(pool)
    assert [(c.device_id, c.state, c.incident_kind) for c in changes] == [(new, "up", None)]
    assert await pool.fetchval("SELECT count(*) FROM incidents") == 0
    await pool.close()


async def test_a_push_child_still_silent_after_its_parent_recovered_gets_its_own_incident(database_url: str):
    await migrate(database_url)
    pool = await db.create_pool(database_url)
    tenant = await pool.fetchval("INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) "
                                 "VALUES ('acme', 'h', 'http://127.0.0.1:9/hook', 'secret') RETURNING id")
    parent = await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target, state) "
                                 "VALUES ($1, 'gw', 'icmp', '10.0.0.1', 'down') RETURNING id", tenant)
    child = await pool.fetchval(
        "INSERT INTO devices (tenant_id, name, kind, interval_s, grace_s, last_seen_at, parent_id, state) "
        "VALUES ($1, 'meter', 'push', 10, 30, now() - interval '100 seconds', $2, 'up') RETURNING id",
        tenant, parent)
    changes = await check_silence(pool)
    assert [(c.device_id, c.state, c.incident_kind) for c in changes] == [(child, "down", None)]  # suppressed
    # the parent came back 10 s ago: within the child's grace, nothing yet
    await pool.execute("UPDATE devices SET state = 'up', state_since = now() - interval '10 seconds' "
                       "WHERE id = $1", parent)
    assert await check_silence(pool) == []
    # a full grace time after the parent's recovery the child is still silent: its own incident and webhook
    await pool.execute("UPDATE devices SET state_since = now() - interval '40 seconds' WHERE id = $1", parent)
    changes = await check_silence(pool)
    assert [(c.device_id, c.state, c.incident_kind) for c in changes] == [(child, "down", "silent")]
    incident = await pool.fetchrow("SELECT kind, summary FROM incidents WHERE device_id = $1 AND resolved_at IS NULL",
                                   child)
    assert incident["kind"] == "silent" and "after its parent gw recovered" in incident["summary"]
    events = await pool.fetch("SELECT event_type FROM webhook_deliveries")
    assert [e["event_type"] for e in events] == ["incident.opened"]
    assert await check_silence(pool) == []  # once
    await pool.close()
