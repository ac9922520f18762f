"""Benchmark: a public status page of 500 components with 90 days of history (issue 14: p95 <= 100 ms).

    .venv/bin/python bench/status_page.py [--components 500] [--changes-per-day 4] [--requests 1200]
        [--rate 20] [--cold 3]

Starts a throwaway PostgreSQL and Redis (tests/servers.py), applies the migrations, and gives one tenant
`--components` devices with a 90-day state timeline (`--changes-per-day` changes each per day), an incident
with notes on a few of them, an active and a scheduled maintenance window, and one published page listing
them all. Then it runs `iot dashboard` as a real process and, over HTTP on loopback, without sign-in:
1. cold: `--cold` times, drops the page's cache entry and requests the page (what the first visitor after
   a quiet spell of 30 s waits for: the 90-day uptime of every component, rendered);
2. served: `--requests` requests at `--rate` per second (so the run spans several cache lifetimes: entries
   expire and are refreshed as in production), and prints p50/p95/p99/max in ms and how many took > 500 ms.

Run on the shared machine only once, at the default size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from dashboard.harness import start_dashboard  # noqa: E402
from servers import PostgresServer, RedisServer  # noqa: E402

from iot.db import connect  # noqa: E402
from iot.db.migrate import migrate  # noqa: E402
from iot.egress import EgressPolicy  # noqa: E402
from iot.repo import devices, status_pages, tenants  # noqa: E402
from iot.status_pages import cache_key  # noqa: E402

# $3 changes per day over the last 90 days for every device of tenant $1 with id in $2 (as bench/history_query).
INSERT_TIMELINE = """
INSERT INTO device_state_changes (tenant_id, device_id, at, state, previous)
SELECT $1::bigint, d, now() - interval '90 days' + (k * interval '1 day' / $3::int) + (d % 600) * interval '1 second',
       (ARRAY['down', 'up', 'degraded', 'up'])[k % 4 + 1], (ARRAY['up', 'down', 'up', 'degraded'])[k % 4 + 1]
FROM unnest($2::bigint[]) d, generate_series(0, $3::int * 90 - 1) k
"""


async def seed(database_url: str, components: int, changes: int) -> tuple[str, int, str]:
    await migrate(database_url)
    conn = await connect(database_url)
    try:
        tenant, _ = await tenants.create_tenant(conn, "benchstatus")
        specs = [devices.DeviceSpec(f"service-{i:04d}", "http", f"http://10.0.{i // 256}.{i % 256}/", tags=["public"])
                 for i in range(components)]
        ids = [c.id for c in await devices.create_devices(conn, tenant.id, specs,
                                                          egress=EgressPolicy.parse("10.0.0.0/8"))]
        await conn.execute("UPDATE devices SET state = 'up', state_since = now() - interval '200 days' "
                           "WHERE tenant_id = $1", tenant.id)
        await conn.execute("DELETE FROM device_state_changes")  # the update's rows; the timeline follows
        await conn.execute(INSERT_TIMELINE, tenant.id, ids, changes)
        for device_id in ids[:5]:
            incident = await conn.fetchval(
                "INSERT INTO incidents (tenant_id, device_id, kind, summary, opened_at, resolved_at) VALUES "
                "($1, $2, 'down', 'down', now() - interval '3 days', now() - interval '3 days' + interval '1 hour') "
                "RETURNING id", tenant.id, device_id)
            await conn.execute("INSERT INTO incident_events (tenant_id, incident_id, kind, actor, text) VALUES "
                               "($1, $2, 'note', 'ops', 'Investigating'), ($1, $2, 'note', 'ops', 'Fixed')",
                               tenant.id, incident)
        await conn.execute("INSERT INTO maintenance_windows (tenant_id, scope, device_id, reason, starts_at, ends_at) "
                           "VALUES ($1, 'device', $2, 'Upgrade', now() - interval '5 minutes', now() + interval '2 hours')",
                           tenant.id, ids[0])
        await conn.execute("INSERT INTO maintenance_windows (tenant_id, scope, reason, starts_at, ends_at, rrule) "
                           "VALUES ($1, 'tenant', 'Weekly backups', now() - interval '60 days', "
                           "now() - interval '60 days' + interval '1 hour', 'FREQ=WEEKLY')", tenant.id)
        await conn.execute("VACUUM ANALYZE")
        page = await status_pages.create_page(conn, tenant.id, status_pages.PageSpec(
            "public", "Bench status", device_ids=ids[: status_pages.MAX_COMPONENTS], published=True))
        rows = await conn.fetchval("SELECT count(*) FROM device_state_changes")
        print(f"seeded {components} components, {rows:,} state changes (90 days), page /status/{page.slug}")
        return tenant.slug, tenant.id, page.slug
    finally:
        await conn.close()


def percentile(times: list[float], p: int) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[p - 1] if len(times) > 1 else times[0]


def measure(url: str, host: str, tenant_id: int, slug: str, redis_url: str, args: argparse.Namespace) -> None:
    from redis import Redis

    redis = Redis.from_url(redis_url)
    with httpx.Client(base_url=url, headers={"Host": host}, timeout=60) as client:
        cold = []
        for _ in range(args.cold):
            redis.delete(cache_key(tenant_id, slug))
            started = time.perf_counter()
            response = client.get(f"/status/{slug}")
            cold.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and response.text.count('<i class="bar ') == 90 * args.components
        size, sent = len(response.content), int(response.headers["content-length"])
        print(f"cold (cache miss, rendered in line), {args.cold} requests: "
              + ", ".join(f"{t:.0f}" for t in cold) + f" ms; page {size / 1024:.0f} KiB, {sent / 1024:.0f} KiB gzip")
        times = []
        interval = 1 / args.rate
        next_at = time.perf_counter()
        for _ in range(args.requests):
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_at += interval
            started = time.perf_counter()
            response = client.get(f"/status/{slug}")
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
    redis.close()
    slow = sum(1 for t in times if t > 500)
    span = args.requests / args.rate
    print(f"served, {args.requests} requests at {args.rate}/s over {span:.0f} s: p50 {statistics.median(times):.1f} ms, "
          f"p95 {percentile(times, 95):.1f} ms, p99 {percentile(times, 99):.1f} ms, max {max(times):.1f} ms; "
          f"{slow} over 500 ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--components", type=int, default=500)
    parser.add_argument("--changes-per-day", type=int, default=4)
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--cold", type=int, default=3, help="requests after dropping the cache entry")
    args = parser.parse_args()
    pg, redis = PostgresServer().start(), RedisServer().start()
    proc = None
    try:
        database_url = pg.create_database("bench_status")
        tenant_slug, tenant_id, slug = asyncio.run(seed(database_url, args.components, args.changes_per_day))
        log = ROOT / "test-artifacts" / "bench-status-dashboard.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc, port = start_dashboard(database_url, redis.url, log, ALLOW_DEFAULT_SECRETS="true")  # throwaway data
        measure(f"http://127.0.0.1:{port}", f"{tenant_slug}.localhost", tenant_id, slug, redis.url, args)
    finally:
        if proc is not None:
            proc.stop()
        redis.cleanup()
        pg.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
