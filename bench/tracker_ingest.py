"""Benchmark: tracker ingest of metric points (batched) into PostgreSQL.

    .venv/bin/python bench/tracker_ingest.py [--seconds 10] [--batch 1000] [--concurrency 16] [--devices 50]

Starts a throwaway PostgreSQL and Redis (tests/servers.py) unless --database-url/--redis-url are given,
runs `iot migrate`, starts `iot tracker` as a real process, creates a tenant with push devices, then
POSTs pre-encoded batches of points to /v1/metrics from concurrent clients for a fixed time. Prints:

- HTTP ingest points/s: end to end (JSON parse, validation, group-commit COPY, last-seen updates);
- COPY-only points/s: the same writer (iot.tracker.ingest.MetricWriter) driven in-process, which is the
  database ceiling without HTTP/JSON.

Target (issue 3): >= 50,000 points/s for one tracker process. The load generator shares the machine, so
the HTTP figure is a lower bound on a busy box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import PostgresServer, RedisServer, free_port, wait_port  # noqa: E402

from iot.db import create_pool  # noqa: E402
from iot.db.migrate import migrate  # noqa: E402
from iot.tracker.ingest import MetricWriter  # noqa: E402

ADMIN_TOKEN = "bench-admin-token-0123456789"


async def setup_tenant(url: str, devices: int) -> list[str]:
    async with aiohttp.ClientSession(url) as http:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with http.post("/v1/tenants", json={"slug": f"bench-{os.getpid()}"}, headers=headers) as r:
            api_key = (await r.json())["api_key"]
        body = [{"name": f"meter-{i}", "kind": "push"} for i in range(devices)]
        async with http.post("/v1/devices", json=body, headers={"Authorization": f"Bearer {api_key}"}) as r:
            return [d["token"] for d in (await r.json())["devices"]]


async def http_load(url: str, tokens: list[str], batch: int, concurrency: int, seconds: float) -> tuple[int, int]:
    payload = json.dumps({"points": [{"name": "power_w", "value": i * 0.25} for i in range(batch)]}).encode()
    stored = errors = 0
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal stored, errors
        headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(url) as http:
            while time.monotonic() < deadline:
                async with http.post("/v1/metrics", data=payload, headers=headers) as r:
                    if r.status == 200:
                        done = (await r.json())["stored"]  # read before adding: `+= await` loses updates
                        stored += done
                    else:
                        errors += 1

    await asyncio.gather(*(client(n) for n in range(concurrency)))
    return stored, errors


async def copy_only(database_url: str, batch: int, concurrency: int, seconds: float) -> int:
    pool = await create_pool(database_url, min_size=2, max_size=4)
    device_ids = [r["id"] for r in await pool.fetch("SELECT id FROM devices ORDER BY id LIMIT 50")]
    writer = MetricWriter(pool)
    writer.start()
    stored = 0
    deadline = time.monotonic() + seconds

    async def producer(n: int) -> None:
        nonlocal stored
        while time.monotonic() < deadline:
            now = datetime.now(UTC)
            points = [(now, "power_w", i * 0.25) for i in range(batch)]
            done = await writer.write(device_ids[n % len(device_ids)], points, now)
            stored += done

    await asyncio.gather(*(producer(n) for n in range(concurrency)))
    await writer.stop()
    await pool.close()
    return stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1000, help="points per request")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()

    servers = []
    if not args.database_url:
        pg = PostgresServer().start()
        servers.append(pg)
        args.database_url = pg.create_database("bench_ingest")
    if not args.redis_url:
        rs = RedisServer().start()
        servers.append(rs)
        args.redis_url = rs.url
    asyncio.run(migrate(args.database_url))
    port = free_port()
    env = {**os.environ, "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url, "APP_PORT": str(port),
           "APP_HOST": "127.0.0.1", "ADMIN_TOKEN": ADMIN_TOKEN, "LOG_LEVEL": "warning",
           # The ceiling of one process is measured, not one tenant's quota (QUOTA_POINTS_PER_SECOND).
           "QUOTA_POINTS_PER_SECOND": "100000000"}
    iot = str(Path(sys.executable).parent / "iot")
    tracker = subprocess.Popen([iot, "tracker"], env=env)
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}"
        tokens = asyncio.run(setup_tenant(url, args.devices))
        started = time.monotonic()
        stored, errors = asyncio.run(http_load(url, tokens, args.batch, args.concurrency, args.seconds))
        elapsed = time.monotonic() - started
        print(f"tracker HTTP ingest: {stored / elapsed:,.0f} points/s ({stored:,} points in {elapsed:.1f}s, "
              f"batch {args.batch}, {args.concurrency} clients, {errors} errors)")
    finally:
        tracker.terminate()
        tracker.wait(10)
    started = time.monotonic()
    stored = asyncio.run(copy_only(args.database_url, args.batch, args.concurrency, args.seconds))
    elapsed = time.monotonic() - started
    print(f"group-commit COPY only: {stored / elapsed:,.0f} points/s ({stored:,} points in {elapsed:.1f}s)")

    async def count() -> int:
        conn = await asyncpg.connect(args.database_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM device_metrics")
        finally:
            await conn.close()

    print(f"rows in device_metrics: {asyncio.run(count()):,}")
    for server in servers:
        server.cleanup()
    print("target: >= 50,000 points/s per tracker process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
