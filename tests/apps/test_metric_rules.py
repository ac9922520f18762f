"""Metric rules open incidents when they held for their duration and resolve them when they stop holding.

Points go through the real ingest writer (so rollups are written as in production) with explicit timestamps;
each pass is evaluated at an explicit `now`, never after a sleep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iot.tracker.ingest import MetricWriter
from iot.worker.metric_rules import evaluate_rules

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


async def _tenant(pool, slug: str, webhook: bool = True) -> int:
    return await pool.fetchval(
        "INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) VALUES ($1, $1, $2, 's') RETURNING id",
        slug, "http://127.0.0.1:9/hook" if webhook else None)


async def _device(pool, tenant: int, name: str, tags: list[str] | None = None) -> int:
    return await pool.fetchval(
        "INSERT INTO devices (tenant_id, name, kind, state, tags) VALUES ($1, $2, 'push', 'up', $3) RETURNING id",
        tenant, name, tags or [])


async def _rule(pool, tenant: int, metric: str, operator: str | None = None, threshold: float | None = None, *,
                device: int | None = None, tag: str | None = None, for_s: int = 0, kind: str = "threshold",
                z_score: float | None = None) -> int:
    return await pool.fetchval(
        "INSERT INTO metric_rules (tenant_id, device_id, tag, metric, kind, operator, threshold, z_score, for_s) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        tenant, device, tag, metric, kind, operator, threshold, z_score, for_s)


async def _push(writer: MetricWriter, device: int, name: str, series: list[tuple[datetime, float]]) -> None:
    await writer.write(device, [(ts, name, value) for ts, value in series], series[-1][0])


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def _open(pool) -> list[tuple[int, int]]:
    rows = await pool.fetch("SELECT device_id, (details->>'rule_id')::bigint AS rule FROM incidents "
                            "WHERE kind = 'metric' AND resolved_at IS NULL ORDER BY id")
    return [(r["device_id"], r["rule"]) for r in rows]


async def test_temperature_above_8_for_5_min_opens_only_after_5_min_and_resolves_when_back_below(pool):
    writer = MetricWriter(pool)
    writer.start()
    tenant = await _tenant(pool, "acme")
    fridge = await _device(pool, tenant, "fridge-1")
    rule = await _rule(pool, tenant, "temperature", ">", 8, device=fridge, for_s=300)

    # one point a minute: 7 (fine), then above 8 from minute 1 on
    await _push(writer, fridge, "temperature", [(_at(0), 7.0), (_at(1), 8.5), (_at(2), 9.0)])
    assert (await evaluate_rules(pool, now=_at(2).timestamp())).opened == []
    await _push(writer, fridge, "temperature", [(_at(3), 9.5), (_at(4), 9.1), (_at(5), 8.9)])
    # above 8 for 4 minutes only (minute 1 to 5)
    assert (await evaluate_rules(pool, now=_at(5).timestamp())).opened == []
    # other metrics and a value equal to the threshold elsewhere change nothing
    await _push(writer, fridge, "humidity", [(_at(5.5), 99.0)])
    assert await _open(pool) == []

    await _push(writer, fridge, "temperature", [(_at(6), 9.3)])
    result = await evaluate_rules(pool, now=_at(6).timestamp())
    assert result.opened == [(rule, fridge)]
    incident = await pool.fetchrow("SELECT * FROM incidents WHERE kind = 'metric'")
    assert incident["summary"] == "fridge-1: temperature > 8 for 5 min (last 9.3)"
    details = incident["details"]
    assert details["rule_id"] == rule and details["last_value"] == 9.3
    assert incident["tenant_id"] == tenant and incident["resolved_at"] is None
    # the device itself stays up: a metric incident is not a state change
    assert await pool.fetchval("SELECT state FROM devices WHERE id = $1", fridge) == "up"
    # still above: no second incident
    await _push(writer, fridge, "temperature", [(_at(7), 9.9)])
    assert (await evaluate_rules(pool, now=_at(7).timestamp())).opened == []
    assert len(await _open(pool)) == 1

    await _push(writer, fridge, "temperature", [(_at(8), 7.5)])
    result = await evaluate_rules(pool, now=_at(8).timestamp())
    assert result.resolved == [(rule, fridge)]
    assert await _open(pool) == []
    resolved = await pool.fetchrow("SELECT resolved_at, details FROM incidents WHERE kind = 'metric'")
    assert resolved["resolved_at"] == _at(8)
    assert resolved["details"]["resolved_because"] == "back to normal"

    # the notification queue got one event on open and one on resolve, for this incident
    events = await pool.fetch("SELECT tenant_id, event_type, payload FROM webhook_deliveries ORDER BY id")
    assert [e["event_type"] for e in events] == ["incident.opened", "incident.resolved"]
    assert {e["tenant_id"] for e in events} == {tenant}
    payload = events[0]["payload"]
    assert payload["device"] == {"id": fridge, "name": "fridge-1"}
    assert payload["incident"]["kind"] == "metric" and payload["incident"]["id"] == incident["id"]
    assert payload["incident"]["details"]["rule_id"] == rule
    # a replayed pass enqueues nothing twice
    await evaluate_rules(pool, now=_at(8).timestamp())
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 2
    await writer.stop()


async def test_a_dip_inside_the_duration_restarts_it(pool):
    writer = MetricWriter(pool)
    writer.start()
    tenant = await _tenant(pool, "acme")
    fridge = await _device(pool, tenant, "fridge-1")
    await _rule(pool, tenant, "temperature", ">", 8, device=fridge, for_s=300)
    await _push(writer, fridge, "temperature", [(_at(m), 9.0) for m in range(0, 4)] + [(_at(4), 8.0)]
                + [(_at(m), 9.0) for m in range(5, 9)])
    # 9 from minute 0, but 8 (not above 8) at minute 4: only 3 minutes held at minute 8
    assert (await evaluate_rules(pool, now=_at(8).timestamp())).opened == []
    await _push(writer, fridge, "temperature", [(_at(10), 9.0)])
    assert len((await evaluate_rules(pool, now=_at(10).timestamp())).opened) == 1
    await writer.stop()


async def test_battery_below_15_opens_at_once_and_tenants_without_webhook_get_no_delivery(pool):
    writer = MetricWriter(pool)
    writer.start()
    tenant = await _tenant(pool, "acme", webhook=False)
    tracker = await _device(pool, tenant, "tracker-9")
    rule = await _rule(pool, tenant, "battery", "<", 15, device=tracker)
    await _push(writer, tracker, "battery", [(_at(0), 40.0)])
    assert (await evaluate_rules(pool, now=_at(0).timestamp())).opened == []
    await _push(writer, tracker, "battery", [(_at(1), 14.0)])
    assert (await evaluate_rules(pool, now=_at(1).timestamp())).opened == [(rule, tracker)]
    assert await pool.fetchval("SELECT summary FROM incidents") == "tracker-9: battery < 15 (last 14)"
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
    await writer.stop()


async def test_a_tag_rule_applies_to_tagged_devices_of_its_tenant_only(pool):
    writer = MetricWriter(pool)
    writer.start()
    acme = await _tenant(pool, "acme")
    other = await _tenant(pool, "other")
    cold = await _device(pool, acme, "cold-1", ["cold-chain"])
    plain = await _device(pool, acme, "plain-1")
    # another tenant's device with the same tag and metric: the acme rule must never see it
    foreign = await _device(pool, other, "cold-x", ["cold-chain"])
    rule = await _rule(pool, acme, "temperature", ">=", 8, tag="cold-chain")
    for device in (cold, plain, foreign):
        await _push(writer, device, "temperature", [(_at(0), 12.0)])
    result = await evaluate_rules(pool, now=_at(0).timestamp())
    assert result.opened == [(rule, cold)]
    assert await _open(pool) == [(cold, rule)]
    rows = await pool.fetch("SELECT tenant_id, device_id FROM webhook_deliveries d "
                            "JOIN LATERAL (SELECT (payload->'device'->>'id')::bigint AS device_id) x ON true")
    assert [(r["tenant_id"], r["device_id"]) for r in rows] == [(acme, cold)]

    # the tag is removed from the device: the rule no longer applies, its incident resolves
    await pool.execute("UPDATE devices SET tags = '{}' WHERE id = $1", cold)
    result = await evaluate_rules(pool, now=_at(0.5).timestamp())
    assert result.resolved == [(rule, cold)]
    reason = await pool.fetchval("SELECT details->>'resolved_because' FROM incidents")
    assert reason == "rule no longer applies"
    await writer.stop()


async def test_metric_incident_coexists_with_a_state_incident_and_survives_state_changes(pool):
    from iot.worker import store

    writer = MetricWriter(pool)
    writer.start()
    tenant = await _tenant(pool, "acme")
    pump = await _device(pool, tenant, "pump-1")
    await _rule(pool, tenant, "pressure", ">", 5, device=pump)
    await _push(writer, pump, "pressure", [(_at(0), 6.0)])
    await evaluate_rules(pool, now=_at(0).timestamp())
    async with pool.acquire() as conn, conn.transaction():
        await store.write_state_changes(conn, [store.StateChange(pump, "down", _at(1).timestamp(), "silent",
                                                                 "pump-1 is silent", previous="up")])
    kinds = await pool.fetch("SELECT kind FROM incidents WHERE resolved_at IS NULL ORDER BY kind")
    assert [k["kind"] for k in kinds] == ["metric", "silent"]
    async with pool.acquire() as conn, conn.transaction():
        await store.write_state_changes(conn, [store.StateChange(pump, "up", _at(2).timestamp(), previous="down")])
    kinds = await pool.fetch("SELECT kind FROM incidents WHERE resolved_at IS NULL")
    assert [k["kind"] for k in kinds] == ["metric"]  # recovery closes the state incident only
    await writer.stop()


async def test_anomaly_rule_flags_a_value_far_from_the_baseline_of_the_day_before(pool):
    writer = MetricWriter(pool)
    writer.start()
    tenant = await _tenant(pool, "acme")
    motor = await _device(pool, tenant, "motor-1")
    rule = await _rule(pool, tenant, "vibration", kind="anomaly", z_score=4, device=motor)
    # a baseline: two hours of readings around 10 (9, 10, 11), one a minute, ending an hour before
    start = T0 - timedelta(hours=3)
    await _push(writer, motor, "vibration", [(start + timedelta(minutes=m), 9.0 + m % 3) for m in range(120)])
    await _push(writer, motor, "vibration", [(_at(0), 11.0)])
    assert (await evaluate_rules(pool, now=_at(0).timestamp())).opened == []  # within the usual spread
    await _push(writer, motor, "vibration", [(_at(1), 25.0)])
    assert (await evaluate_rules(pool, now=_at(1).timestamp())).opened == [(rule, motor)]
    details = await pool.fetchval("SELECT details FROM incidents")
    assert round(details["baseline_mean"], 3) == 10.0 and 0.8 < details["baseline_stddev"] < 0.9
    assert await pool.fetchval("SELECT summary FROM incidents") == "motor-1: vibration anomaly (z > 4) (last 25)"
    await _push(writer, motor, "vibration", [(_at(2), 10.0)])
    assert (await evaluate_rules(pool, now=_at(2).timestamp())).resolved == [(rule, motor)]
    await writer.stop()


async def test_anomaly_rule_without_a_baseline_gives_no_verdict(pool):
    writer = MetricWriter(pool)
    writer.start()
    tenant = await _tenant(pool, "acme")
    motor = await _device(pool, tenant, "motor-1")
    await _rule(pool, tenant, "vibration", kind="anomaly", z_score=3, device=motor)
    await _push(writer, motor, "vibration", [(_at(0), 10.0), (_at(1), 1000.0)])
    assert (await evaluate_rules(pool, now=_at(1).timestamp())).opened == []
    await writer.stop()


async def test_ingest_writes_minute_rollups_with_last_by_timestamp(pool):
    writer = MetricWriter(pool)
    writer.start()
    tenant = await _tenant(pool, "acme")
    dev = await _device(pool, tenant, "d")
    minute = _at(0)
    await _push(writer, dev, "t", [(minute + timedelta(seconds=30), 3.0), (minute + timedelta(seconds=10), 1.0)])
    # a later batch: a late point (earlier in the minute) must not become `last`
    await _push(writer, dev, "t", [(minute + timedelta(seconds=5), 8.0), (minute + timedelta(seconds=70), 2.0)])
    rows = await pool.fetch("SELECT minute, count, sum, sum_sq, min, max, last FROM metric_rollups ORDER BY minute")
    assert [tuple(r) for r in rows] == [
        (minute, 3, 12.0, 74.0, 1.0, 8.0, 3.0),
        (minute + timedelta(minutes=1), 1, 2.0, 4.0, 2.0, 2.0, 2.0),
    ]
    await writer.stop()


async def test_the_leading_worker_runs_the_rules_and_a_recovery_resolves(database_url: str, redis_url: str):
    """The real WorkerService: its leader evaluates rules every METRIC_RULES_PERIOD_SECONDS on live points."""
    import asyncio
    import time

    import redis.asyncio as aioredis

    from iot import db
    from iot.db.migrate import migrate
    from iot.settings import WorkerSettings
    from iot.worker.main import WorkerService

    await migrate(database_url)
    pool = await db.create_pool(database_url)
    writer = MetricWriter(pool)
    writer.start()
    tenant = await _tenant(pool, "acme")
    fridge = await _device(pool, tenant, "fridge-1")
    await _rule(pool, tenant, "temperature", ">", 8, device=fridge, for_s=300)
    now = datetime.now(UTC)
    await _push(writer, fridge, "temperature", [(now - timedelta(minutes=m), 9.0) for m in range(6, -1, -1)])

    client = aioredis.Redis.from_url(redis_url)
    worker = WorkerService(WorkerSettings(database_url=database_url, redis_url=redis_url, instance_id="w",
                                          metric_rules_period_seconds=0.2), client, pool)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 15
        while not await condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    await until(lambda: _has(pool, "SELECT 1 FROM incidents WHERE kind = 'metric' AND resolved_at IS NULL"),
                "the worker to open the metric incident")
    await _push(writer, fridge, "temperature", [(datetime.now(UTC), 6.0)])
    await until(lambda: _has(pool, "SELECT 1 FROM incidents WHERE kind = 'metric' AND resolved_at IS NOT NULL"),
                "the worker to resolve it")
    events = await pool.fetch("SELECT event_type FROM webhook_deliveries ORDER BY id")
    assert [e["event_type"] for e in events] == ["incident.opened", "incident.resolved"]
    stop.set()
    await task
    await writer.stop()
    await client.aclose()
    await pool.close()


async def _has(pool, sql: str) -> bool:
    return await pool.fetchval(sql) is not None


async def test_astronomic_values_of_one_tenant_do_not_stop_the_rules_of_others(pool):
    """Squares of 1e200 overflow a float: the rollups and the anomaly baseline must neither fail ingest nor the
    pass, and the other tenant's rule still opens its incident."""
    writer = MetricWriter(pool)
    writer.start()
    odd = await _tenant(pool, "odd")
    acme = await _tenant(pool, "acme")
    rocket = await _device(pool, odd, "rocket")
    fridge = await _device(pool, acme, "fridge-1")
    anomaly = await _rule(pool, odd, "thrust", kind="anomaly", z_score=3, device=rocket)
    threshold = await _rule(pool, odd, "thrust", ">", 0, device=rocket)
    acme_rule = await _rule(pool, acme, "temperature", ">", 8, device=fridge)
    start = T0 - timedelta(hours=3)
    # two batches into the same minutes: squares of 1.2e154 are finite, their sum is not (Postgres would refuse
    # the upsert's addition); squares of 1e200 are infinite at once
    for value in (1.2e154, 1.2e154, 1e200):
        await _push(writer, rocket, "thrust", [(start + timedelta(minutes=m), value * (1 + m % 3)) for m in range(60)])
    await _push(writer, rocket, "thrust", [(_at(0), -1.7e308), (_at(0.5), 1.7e308)])
    await _push(writer, fridge, "temperature", [(_at(0), 9.0)])
    result = await evaluate_rules(pool, now=_at(1).timestamp())
    assert (acme_rule, fridge) in result.opened
    # the odd tenant is judged too: its threshold rule opens, its anomaly rule has no usable baseline
    assert (threshold, rocket) in result.opened and (anomaly, rocket) not in result.opened
    assert await pool.fetchval("SELECT count(*) FROM metric_rollups WHERE device_id = $1", rocket) == 61
    await writer.stop()


async def test_a_metric_incident_reaches_the_channels_that_asked_for_metric_events_on_that_device(pool):
    # Channels (issue 14) get metric incidents too: routed by tag, only when "metric" is among their events.
    writer = MetricWriter(pool)
    writer.start()
    tenant = await _tenant(pool, "acme", webhook=False)
    fridge = await _device(pool, tenant, "fridge-1", tags=["site:berlin"])
    other = await _device(pool, tenant, "fridge-2", tags=["site:paris"])
    channels = {}
    for name, events, tags in (("berlin", ["down", "metric"], ["site:berlin"]), ("states only", ["down"], ["site:berlin"]),
                               ("paris", ["metric"], ["site:paris"])):
        channels[name] = await pool.fetchval(
            "INSERT INTO channels (tenant_id, name, kind, config_sealed, events, route, route_tags) "
            "VALUES ($1, $2, 'apprise', 'x', $3, 'tags', $4) RETURNING id", tenant, name, events, tags)
    await _rule(pool, tenant, "battery", "<", 15, device=fridge)
    await _push(writer, fridge, "battery", [(_at(0), 14.0)])
    await evaluate_rules(pool, now=_at(0).timestamp())
    await _push(writer, fridge, "battery", [(_at(1), 60.0)])
    await evaluate_rules(pool, now=_at(1).timestamp())
    rows = await pool.fetch("SELECT channel_id, event_type, payload->>'kind' AS kind FROM webhook_deliveries ORDER BY id")
    assert [(r["channel_id"], r["event_type"], r["kind"]) for r in rows] == [
        (channels["berlin"], "incident.opened", "metric"), (channels["berlin"], "incident.resolved", "metric")]
    assert other  # the paris channel's device has no rule: nothing for it
    await evaluate_rules(pool, now=_at(1).timestamp())  # a replayed pass enqueues nothing twice
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 2
    await writer.stop()
