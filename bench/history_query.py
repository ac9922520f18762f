"""Benchmark: history storage per device per day, and the 90-day uptime query at N devices (issue 14).

    .venv/bin/python bench/history_query.py [--devices 10000] [--regions 2] [--interval 60]
        [--changes-per-day 4] [--sample 100] [--queries 200] [--components 500]

Starts a throwaway PostgreSQL (tests/servers.py) and applies the migrations (0011: time partitions), then
1. storage: writes one full UTC day of history for `--sample` devices as the services write it: minute
   rollups per region with the evaluator's own upsert (60 / interval latencies per row), one metric point
   per minute per device (a push device's typical rate, COPY as the tracker does), downsamples the day to
   hourly rollups with the worker's job, and a state timeline of `--changes-per-day` changes. It prints rows
   and bytes (table + indexes + TOAST of that day's partitions) per device per day for each table;
2. query: gives all N devices a 90-day state timeline (`--changes-per-day` changes per day, so N x 90 x
   changes rows), then times `repo.history.uptime_report(range=90d)` (the API's and the dashboard's query:
   the device, its changes, the daily buckets) for `--queries` random devices: p50/p95/max; and
   `uptime_reports` of `--components` devices in one call (a status page's 90-day bars).

Do not run it at full scale on a shared machine; `--devices 50 --queries 20` proves it works.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import PostgresServer  # noqa: E402

from iot.db import connect  # noqa: E402
from iot.db.migrate import migrate  # noqa: E402
from iot.egress import EgressPolicy  # noqa: E402
from iot.repo import devices, history, tenants  # noqa: E402
from iot.worker import downsample, partitions  # noqa: E402
from iot.worker.store import UPSERT_ROLLUPS  # noqa: E402

REGIONS = ("frankfurt", "amsterdam", "ashburn", "hillsboro", "singapore", "tokyo")
STATES = ("up", "down", "up", "degraded")

# A timeline of $3 changes per day over [$4, $4 + $5 days) for every device of tenant $1 with id in $2.
INSERT_TIMELINE = """
INSERT INTO device_state_changes (tenant_id, device_id, at, state, previous)
SELECT $1::bigint, d, $4::timestamptz + (k * interval '1 day' / $3::int) + (d % 600) * interval '1 second',
       (ARRAY['down', 'up', 'degraded', 'up'])[k % 4 + 1], (ARRAY['up', 'down', 'up', 'degraded'])[k % 4 + 1]
FROM unnest($2::bigint[]) d, generate_series(0, $3::int * $5::int - 1) k
"""
PARTITION_BYTES = "SELECT pg_total_relation_size($1::regclass)"
COUNT_ROWS = "SELECT count(*) FROM {name}"


async def setup(conn, count: int) -> tuple[int, list[int]]:
    tenant, _ = await tenants.create_tenant(conn, "bench")
    specs = [devices.DeviceSpec(f"sensor-{i:05d}", "http", f"http://10.{i // 65536}.{i // 256 % 256}.{i % 256}/")
             for i in range(count)]
    created = await devices.create_devices(conn, tenant.id, specs, egress=EgressPolicy.parse("10.0.0.0/8"))
    ids = [c.id for c in created]
    await conn.execute("UPDATE devices SET state = 'up', state_since = now() - interval '200 days' "
                       "WHERE tenant_id = $1", tenant.id)
    await conn.execute("DELETE FROM device_state_changes")  # the update's own rows; the bench writes its own
    return tenant.id, ids


async def storage(conn, tenant_id: int, ids: list[int], regions: tuple[str, ...], interval: int, changes: int) -> None:
    day = partitions.period_start(datetime.now(UTC) - timedelta(days=2), "day")  # a complete day, partitioned
    per_minute = max(1, 60 // interval)
    for minute in range(1440):
        at = (day + timedelta(minutes=minute)).timestamp()
        rows = [(d, r) for d in ids for r in regions]
        lats = ["{" + ",".join(str(float(5 + (d * 7 + minute + k) % 300)) for k in range(per_minute)) + "}"
                for d, _ in rows]
        await conn.execute(UPSERT_ROLLUPS, [d for d, _ in rows], [r for _, r in rows], [at] * len(rows),
                           [per_minute] * len(rows), [0] * len(rows), lats)
    await conn.copy_records_to_table(
        "device_metrics", columns=("device_id", "ts", "name", "value"),
        records=[(d, day + timedelta(minutes=m), "temperature", 20.0 + m % 10) for d in ids for m in range(1440)])
    await downsample.downsample_hour_range(conn, day, day + timedelta(days=1))
    await conn.execute(INSERT_TIMELINE, tenant_id, ids, changes, day, 1)
    await conn.execute("VACUUM ANALYZE")
    print(f"\nstorage per device per day ({len(ids)} devices, {len(regions)} regions, {interval} s interval, "
          f"{changes} state changes/day):")
    print(f"{'table':<22}{'rows':>10}{'bytes':>12}   retention default")
    retention = {"rollups": "30 d", "device_metrics": "7 d", "rollups_hourly": "400 d", "device_state_changes": "400 d"}
    for table, period in (("rollups", "day"), ("device_metrics", "day"), ("rollups_hourly", "month"),
                          ("device_state_changes", "month")):
        name = partitions.partition_name(table, partitions.period_start(day, period))
        rows = await conn.fetchval(COUNT_ROWS.format(name=name))
        size = await conn.fetchval(PARTITION_BYTES, name)
        print(f"{table:<22}{rows / len(ids):>10.0f}{size / len(ids):>12,.0f}   {retention[table]}")
    await conn.execute("TRUNCATE device_state_changes")


async def query(conn, tenant_id: int, ids: list[int], changes: int, queries: int) -> list[float]:
    start = datetime.now(UTC) - timedelta(days=90)
    for i in range(0, len(ids), 1000):
        await conn.execute(INSERT_TIMELINE, tenant_id, ids[i:i + 1000], changes, start, 90)
    await conn.execute("VACUUM ANALYZE device_state_changes")
    total = await conn.fetchval("SELECT count(*) FROM device_state_changes")
    print(f"\n90-day timeline: {total:,} state changes for {len(ids):,} devices")
    times = []
    sample = random.Random(14).choices(ids, k=queries)
    await history.uptime_report(conn, tenant_id, sample[0], "90d")  # warm-up (plans, caches)
    for device in sample:
        started = time.perf_counter()
        report = await history.uptime_report(conn, tenant_id, device, "90d")
        times.append((time.perf_counter() - started) * 1000)
        assert report is not None and report.total.percent is not None and len(report.days) == 90
    return times


async def page_query(conn, tenant_id: int, ids: list[int], components: int, queries: int) -> list[float]:
    """A status page's shape: 90-day uptime and daily bars of `components` devices in one call."""
    rng = random.Random(15)
    times = []
    for _ in range(queries):
        chosen = rng.sample(ids, k=min(components, len(ids)))
        started = time.perf_counter()
        reports = await history.uptime_reports(conn, tenant_id, chosen, "90d")
        times.append((time.perf_counter() - started) * 1000)
        assert len(reports) == len(chosen)
    return times


def _p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[94] if len(times) > 1 else times[0]


async def run(args: argparse.Namespace, database_url: str) -> None:
    await migrate(database_url)
    conn = await connect(database_url)
    try:
        started = time.perf_counter()
        tenant_id, ids = await setup(conn, args.devices)
        print(f"setup: {args.devices:,} devices in {time.perf_counter() - started:.1f}s")
        regions = REGIONS[: max(1, min(args.regions, len(REGIONS)))]
        await storage(conn, tenant_id, ids[: args.sample], regions, args.interval, args.changes_per_day)
        times = await query(conn, tenant_id, ids, args.changes_per_day, args.queries)
        print(f"90-day uptime of one device, {args.queries} random devices of {args.devices:,}: "
              f"p50 {statistics.median(times):.1f} ms, p95 {_p95(times):.1f} ms, max {max(times):.1f} ms")
        pages = await page_query(conn, tenant_id, ids, args.components, max(1, args.queries // 10))
        print(f"90-day uptime of {min(args.components, len(ids))} devices in one call (a status page), "
              f"{len(pages)} calls: p50 {statistics.median(pages):.1f} ms, p95 {_p95(pages):.1f} ms")
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--regions", type=int, default=2, help=f"regions per device (max {len(REGIONS)})")
    parser.add_argument("--interval", type=int, default=60, help="check interval (s): latencies per minute row")
    parser.add_argument("--changes-per-day", type=int, default=4, help="state changes per device per day")
    parser.add_argument("--sample", type=int, default=100, help="devices whose full day is written (storage)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--components", type=int, default=500, help="devices of the status-page shaped call")
    args = parser.parse_args()
    args.sample = max(1, min(args.sample, args.devices))
    pg = PostgresServer().start()
    try:
        asyncio.run(run(args, pg.create_database("bench_history")))
    finally:
        pg.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
