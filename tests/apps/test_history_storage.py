"""Migration 0011 and the history jobs against real PostgreSQL: partitions created ahead idempotently,
existing rows migrated, downsampling equal to a direct aggregate, retention dropping old partitions while
the hourly rollups survive, and the state timeline recorded by every state write."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from iot_processes import wait_until

from iot.db.migrate import available_migrations, migrate
from iot.devtools.servers import free_port
from iot.worker import downsample, partitions
from iot.worker import history as history_job
from iot.worker.store import UPSERT_ROLLUPS

TABLES = partitions.history_tables(raw_days=7, minute_days=30, hourly_days=400)


async def _partitions(conn: asyncpg.Connection, table: str) -> list[str]:
    return [r["relname"] for r in await conn.fetch(partitions.LIST_PARTITIONS, table)]


async def _tenant_device(conn: asyncpg.Connection, slug: str = "acme", name: str = "pump") -> tuple[int, int]:
    tenant = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ($1, $1) RETURNING id", slug)
    device = await conn.fetchval("INSERT INTO devices (tenant_id, name, kind, target) "
                                 "VALUES ($1, $2, 'http', 'http://192.0.2.1/') RETURNING id", tenant, name)
    return tenant, device


async def _write_rollups(conn: asyncpg.Connection, device: int, start: datetime, minutes: int) -> None:
    """Minute rollups with the evaluator's own statement: latencies vary per minute, every 7th check fails."""
    ids, regions, times, checks, failures, lats = [], [], [], [], [], []
    for m in range(minutes):
        for region in ("ams", "fra"):
            values = [float(10 + (m * 7 + k * 13 + len(region)) % 90) for k in range(4)]
            ids.append(device)
            regions.append(region)
            times.append((start + timedelta(minutes=m)).timestamp())
            checks.append(4)
            failures.append(1 if m % 7 == 0 else 0)
            lats.append("{" + ",".join(str(v) for v in values) + "}")
    await conn.execute(UPSERT_ROLLUPS, ids, regions, times, checks, failures, lats)


async def test_partitions_ahead_are_idempotent(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        now = datetime.now(UTC)
        # the migration made daily partitions up to 3 days ahead: two days later the job adds two
        first = await partitions.ensure_partitions(conn, TABLES, now + timedelta(days=2), ahead_days=3)
        before = {t.name: await _partitions(conn, t.name) for t in TABLES}
        second = await partitions.ensure_partitions(conn, TABLES, now + timedelta(days=2), ahead_days=3)
        after = {t.name: await _partitions(conn, t.name) for t in TABLES}
    finally:
        await conn.close()
    today = partitions.period_start(now, "day")
    new_days = [today + timedelta(days=4), today + timedelta(days=5)]
    expected = [partitions.partition_name(t, d) for t in ("device_metrics", "rollups") for d in new_days]
    assert [n for n in first if not n.startswith(("rollups_hourly", "device_state"))] == expected
    assert second == []
    assert before == after
    # default + daily partitions, no gaps between the migration's and the job's
    assert "rollups_default" in after["rollups"]
    days = sorted(partitions.partition_start(n, "rollups") for n in after["rollups"] if n != "rollups_default")
    assert all(b - a == timedelta(days=1) for a, b in zip(days, days[1:], strict=False))


async def test_rows_of_a_missing_partition_are_kept_then_moved_in(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        _, device = await _tenant_device(conn)
        far = partitions.period_start(datetime.now(UTC) + timedelta(days=20), "day")
        await _write_rollups(conn, device, far, 3)  # no partition yet: the default one keeps them
        in_default = await conn.fetchval("SELECT count(*) FROM rollups_default")
        await partitions.ensure_partitions(conn, TABLES, far, ahead_days=0)
        name = partitions.partition_name("rollups", far)
        moved = await conn.fetchval(f"SELECT count(*) FROM {name}")
        left = await conn.fetchval("SELECT count(*) FROM rollups_default")
    finally:
        await conn.close()
    assert in_default == 6
    assert (moved, left) == (6, 0)


async def test_downsampling_equals_a_direct_aggregate(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        _, device = await _tenant_device(conn)
        now = datetime.now(UTC)
        start = downsample.hour_start(now) - timedelta(hours=3, minutes=-17)  # starts mid-hour
        await _write_rollups(conn, device, start, 150)
        await conn.execute("DELETE FROM history_watermarks")  # as on a fresh install: start at retention
        done = await downsample.downsample(conn, now, minute_retention_days=30)
        again = await downsample.downsample(conn, now, minute_retention_days=30)  # no new hour: nothing to do
        hourly = [dict(r) for r in await conn.fetch(
            "SELECT region, hour, checks, failures, latency_p50, latency_p95, latency_max "
            "FROM rollups_hourly WHERE device_id = $1 ORDER BY region, hour", device)]
        direct = [dict(r) for r in await conn.fetch(
            """WITH g AS (SELECT region, date_trunc('hour', minute, 'UTC') AS hour, sum(checks) AS checks,
                                 sum(failures) AS failures, max(latency_max) AS latency_max
                          FROM rollups WHERE device_id = $1 AND minute < $2 GROUP BY region, 2)
               SELECT g.region, g.hour, g.checks, g.failures, p.p50::real AS latency_p50,
                      p.p95::real AS latency_p95, g.latency_max
               FROM g CROSS JOIN LATERAL (
                   SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS p50,
                          percentile_cont(0.95) WITHIN GROUP (ORDER BY x) AS p95
                   FROM rollups r, unnest(r.latencies) x
                   WHERE r.device_id = $1 AND r.region = g.region
                     AND r.minute >= g.hour AND r.minute < g.hour + interval '1 hour') p
               ORDER BY g.region, g.hour""", device, downsample.hour_start(now))]
    finally:
        await conn.close()
    assert done is not None and done[1] == downsample.hour_start(now)
    assert again is None
    assert len(hourly) == 2 * 3  # 3 complete hours (the first one partial) per region; the current hour waits
    assert hourly == direct
    assert sum(r["checks"] for r in hourly) == 4 * 2 * sum(
        1 for m in range(150) if start + timedelta(minutes=m) < downsample.hour_start(now))


async def test_a_late_result_is_picked_up_when_the_next_hour_completes(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        _, device = await _tenant_device(conn)
        now = datetime.now(UTC)
        last_hour = downsample.hour_start(now) - timedelta(hours=1)
        await _write_rollups(conn, device, last_hour, 10)
        # the job got up to the start of the last hour; now that hour is complete
        await conn.execute("UPDATE history_watermarks SET done_until = $1", last_hour)
        await downsample.downsample(conn, now, minute_retention_days=30)
        first = await conn.fetchval("SELECT sum(checks) FROM rollups_hourly WHERE hour = $1", last_hour)
        await _write_rollups(conn, device, last_hour + timedelta(minutes=30), 1)  # late: after the hour was done
        done = await downsample.downsample(conn, now + timedelta(hours=1), minute_retention_days=30)
        second = await conn.fetchval("SELECT sum(checks) FROM rollups_hourly WHERE hour = $1", last_hour)
    finally:
        await conn.close()
    assert first == 2 * 10 * 4
    assert done == (last_hour, downsample.hour_start(now) + timedelta(hours=1))
    assert second == 2 * 11 * 4


async def test_retention_drops_old_partitions_and_keeps_hourly_rollups(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        _, device = await _tenant_device(conn)
        now = datetime.now(UTC)
        old = partitions.period_start(now - timedelta(days=12), "day")
        await conn.execute(partitions.ATTACH_PARTITION, "rollups", partitions.partition_name("rollups", old),
                           old, old + timedelta(days=1))
        await _write_rollups(conn, device, old + timedelta(hours=5), 60)
        await downsample.downsample_hour_range(conn, old, old + timedelta(days=1))
        await conn.execute("INSERT INTO device_metrics (device_id, ts, name, value) VALUES ($1, $2, 'temp', 1), "
                           "($1, $3, 'temp', 2)", device, now - timedelta(days=7, hours=1), now)
        later = now + timedelta(days=25)  # minute retention (30 d) passes the old day; raw (7 d) passes both points
        dropped = await partitions.drop_expired(conn, TABLES, later)
        again = await partitions.drop_expired(conn, TABLES, later)
        minute_rows = await conn.fetchval("SELECT count(*) FROM rollups WHERE device_id = $1", device)
        hourly = await conn.fetch("SELECT hour, checks FROM rollups_hourly WHERE device_id = $1", device)
        metrics_now = await conn.fetchval("SELECT count(*) FROM device_metrics")
        remaining = await _partitions(conn, "rollups")
        metrics_early = await partitions.drop_expired(conn, TABLES, now)  # raw retention alone, today
        metric_rows = await conn.fetchval("SELECT count(*) FROM device_metrics")
    finally:
        await conn.close()
    assert partitions.partition_name("rollups", old) in dropped
    assert again == []
    assert minute_rows == 0
    assert [(r["hour"], r["checks"]) for r in hourly] == [
        (old + timedelta(hours=5), 4 * 60), (old + timedelta(hours=5), 4 * 60)]
    assert metrics_now == 0  # both points past 7 days at `later`
    assert partitions.partition_name("rollups", old) not in remaining
    assert partitions.partition_name("rollups", partitions.period_start(now, "day")) in remaining  # 25 < 30 days
    starts = [partitions.partition_start(n, "rollups") for n in remaining if n != "rollups_default"]
    assert min(starts) + timedelta(days=1) > later - timedelta(days=30)
    assert metrics_early == [] and metric_rows == 0


async def test_migration_moves_existing_rows_and_records_the_timeline(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        for version, sql in available_migrations():
            if version >= "0011":
                break
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        tenant, device = await _tenant_device(conn)
        now = datetime.now(UTC)
        hour = downsample.hour_start(now) - timedelta(hours=2)
        await _write_rollups(conn, device, hour, 60)
        await _write_rollups(conn, device, downsample.hour_start(now) - timedelta(days=45), 2)  # past 31 days
        await conn.execute("INSERT INTO device_metrics (device_id, ts, name, value) VALUES ($1, now(), 't', 3)", device)
        await conn.execute("UPDATE devices SET state = 'up', state_since = $2 WHERE id = $1", device, hour)
        assert "0011_history" in await migrate(database_url)
        minute_rows = await conn.fetchval("SELECT count(*) FROM rollups")
        in_default = await conn.fetchval("SELECT count(*) FROM rollups_default")
        hourly = await conn.fetch("SELECT hour, checks FROM rollups_hourly ORDER BY hour")
        metrics = await conn.fetchval("SELECT count(*) FROM device_metrics")
        timeline = [tuple(r) for r in await conn.fetch(
            "SELECT tenant_id, at, state, previous FROM device_state_changes ORDER BY at")]
        await conn.execute("UPDATE devices SET state = 'down', state_since = $2 WHERE id = $1", device, now)
        await conn.execute("UPDATE devices SET name = 'renamed' WHERE id = $1", device)  # no state change: no row
        after = [tuple(r) for r in await conn.fetch("SELECT at, state, previous FROM device_state_changes ORDER BY at")]
        kinds = {r["relname"]: r["relkind"] for r in await conn.fetch(
            "SELECT relname, relkind::text FROM pg_class WHERE relname IN ('rollups', 'device_metrics', "
            "'rollups_hourly', 'device_state_changes')")}
    finally:
        await conn.close()
    assert minute_rows == 2 * 62 and in_default == 2 * 2  # 45-day-old rows kept in the default partition
    assert [(r["hour"], r["checks"]) for r in hourly] == [
        (downsample.hour_start(now) - timedelta(days=45), 8), (downsample.hour_start(now) - timedelta(days=45), 8),
        (hour, 240), (hour, 240)]
    assert metrics == 1
    assert timeline == [(tenant, hour, "up", "unknown")]
    assert after == [(hour, "up", "unknown"), (now, "down", "up")]
    assert kinds == dict.fromkeys(("rollups", "device_metrics", "rollups_hourly", "device_state_changes"), "p")


async def test_a_history_round_twice_changes_nothing_the_second_time(pool) -> None:
    now = datetime.now(UTC) + timedelta(days=5)
    first = await history_job.history_round(pool, TABLES, ahead_days=3, minute_days=30, now=now)
    second = await history_job.history_round(pool, TABLES, ahead_days=3, minute_days=30, now=now)
    assert first["created"] and first["dropped"]  # 5 days on: new days ahead, old raw days past 7 days
    assert second["created"] == [] and second["dropped"] == []


def test_the_leader_worker_runs_the_history_jobs(database_url: str, redis_url: str, start_iot) -> None:
    asyncio.run(migrate(database_url))
    ahead = partitions.partition_name("rollups", partitions.period_start(datetime.now(UTC) + timedelta(days=9), "day"))

    async def exists() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", ahead)
        finally:
            await conn.close()

    worker = start_iot("worker", DATABASE_URL=database_url, REDIS_URL=redis_url, APP_PORT=free_port(),
                       APP_HOST="127.0.0.1", PARTITIONS_AHEAD_DAYS=9, HISTORY_JOB_SECONDS=1)
    wait_until(lambda: asyncio.run(exists()) or None, 30, f"partition {ahead} created by the leader", [worker])


async def test_dropping_behind_a_long_read_gives_up_instead_of_queueing_writers(database_url: str) -> None:
    await migrate(database_url)
    reader, job = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        reader_tx = reader.transaction()
        await reader_tx.start()
        await reader.execute("SELECT count(*) FROM rollups")  # a long report holds its lock until it ends
        started = asyncio.get_running_loop().time()
        with pytest.raises(asyncpg.LockNotAvailableError):
            await partitions.drop_expired(job, TABLES, datetime.now(UTC) + timedelta(days=40))
        waited = asyncio.get_running_loop().time() - started
        await reader_tx.rollback()
        dropped = await partitions.drop_expired(job, TABLES, datetime.now(UTC) + timedelta(days=40))
    finally:
        await reader.close()
        await job.close()
    assert waited < 10
    assert dropped  # the next round, without the reader, drops them
