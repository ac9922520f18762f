"""Benchmark: time to detect a failure, and false DOWNs under a region cut (issue 5 closing note).

    .venv/bin/python bench/detection.py [--devices 300] [--failures 120] [--interval 10] [--cut-seconds 40]

Loopback only, bounded (about 3-4 minutes): starts a throwaway PostgreSQL and Redis (tests/servers.py),
then `iot migrate`, tracker, simulator, three monitors (one region each, own 127.0.0.x source address)
and a worker as real processes, with default detection settings (FAILURES_TO_DOWN=2, QUORUM_MIN=2).
1. Time to detect: `--failures` devices are made to fail (HTTP 500) one by one at random moments spread
   over two intervals, so they hit every phase of the schedule. Detection time = the device's
   `state_since` when the worker wrote `down` to PostgreSQL minus the moment the fail command returned.
   Prints p50 / p95 / max.
2. False DOWNs: with every device healthy, the simulator refuses one region's source address for
   `--cut-seconds`; every device that goes `down` (or gets an incident) meanwhile is a false DOWN.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from iot_processes import (  # noqa: E402
    ADMIN_TOKEN,
    REGIONS,
    Proc,
    create_tenant,
    iot_env,
    run_iot,
    wait_http_ok,
    wait_until,
)
from servers import PostgresServer, RedisServer, free_port, free_port_range  # noqa: E402

CUT_REGION = "tokyo"


async def _fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(url, sql, *args))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--failures", type=int, default=120)
    parser.add_argument("--interval", type=int, default=10, help="check interval of every device (s)")
    parser.add_argument("--cut-seconds", type=float, default=40.0)
    args = parser.parse_args()
    if not 100 <= args.failures <= args.devices:
        parser.error("--failures must be at least 100 and at most --devices")

    postgres, redis = PostgresServer().start(), RedisServer().start()
    logs = Path(tempfile.mkdtemp(prefix="bench-detection-"))
    procs: list[Proc] = []
    try:
        database_url = postgres.create_database("bench")
        common = {"DATABASE_URL": database_url, "REDIS_URL": redis.url, "APP_HOST": "127.0.0.1",
                  "LOG_LEVEL": "warning", "MONITOR_NAMES": ",".join(REGIONS)}
        run_iot(["migrate"], iot_env(**common))

        def spawn(name: str, argv: list[str], **env: object) -> Proc:
            proc = Proc(name, argv, iot_env(**common, **env), logs / f"{name}.log").start()
            procs.append(proc)
            return proc

        tracker_port, control_port = free_port(), free_port()
        base_port = free_port_range(args.devices)
        tracker = spawn("tracker", ["tracker"], APP_PORT=tracker_port, ADMIN_TOKEN=ADMIN_TOKEN)
        simulator = spawn("simulator", ["simulate", "--devices", str(args.devices), "--base-port", str(base_port),
                                        "--control-port", str(control_port)])
        for region, source in REGIONS.items():
            spawn(f"monitor-{region}", ["monitor"], APP_PORT=free_port(), REGION=region,
                  MONITOR_SOURCE_ADDRESS=source, HEARTBEAT_SECONDS=2)
        spawn("worker", ["worker"], APP_PORT=free_port(), LOCK_TTL_SECONDS=5, REGION_ALIVE_SECONDS=8,
              REGION_WINDOW_SECONDS=10)
        tracker_url, sim_url = f"http://127.0.0.1:{tracker_port}", f"http://127.0.0.1:{control_port}"
        wait_http_ok(f"{tracker_url}/health", tracker)
        wait_http_ok(f"{sim_url}/health", simulator)

        api_key = create_tenant(tracker_url, "bench")
        tenant = httpx.Client(base_url=tracker_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60)
        sim = httpx.Client(base_url=sim_url, timeout=30)
        body = [{"name": f"d{i}", "kind": "http", "target": f"http://127.0.0.1:{base_port + i}/",
                 "interval_s": args.interval, "timeout_ms": 2000} for i in range(args.devices)]
        response = tenant.post("/v1/devices", json=body)
        response.raise_for_status()
        ids = [d["id"] for d in response.json()["devices"]]

        def count(state: str) -> int:
            return tenant.get("/v1/devices", params={"state": state, "limit": 1}).json()["total"]
        wait_until(lambda: count("up") == args.devices, 3 * args.interval + 30, "all devices up", procs)

        # 1. time to detect
        victims = random.sample(range(args.devices), args.failures)
        spread = 2 * args.interval
        offsets = sorted(random.uniform(0, spread) for _ in victims)
        failed_at: dict[int, float] = {}
        start = time.time()
        for index, offset in zip(victims, offsets, strict=True):
            delay = start + offset - time.time()
            if delay > 0:
                time.sleep(delay)  # a failure scheduled at a random moment (the point of the benchmark)
            sim.post(f"/devices/{index}", json={"mode": "fail"}).raise_for_status()
            failed_at[ids[index]] = time.time()
        wait_until(lambda: count("down") == args.failures, spread + 3 * args.interval + 30,
                   "every failed device down", procs, interval=1.0)
        rows = fetch(database_url, "SELECT id, extract(epoch FROM state_since)::float8 AS since FROM devices "
                     "WHERE state = 'down'")
        detect = [row["since"] - failed_at[row["id"]] for row in rows]
        assert len(detect) == args.failures

        sim.post("/reset").raise_for_status()
        wait_until(lambda: count("up") == args.devices, 3 * args.interval + 30, "all devices up again", procs)

        # 2. region cut: nothing fails, one region sees everything fail
        cut_start = time.time()
        sim.post("/devices", json={"refuse_sources": [REGIONS[CUT_REGION]]}).raise_for_status()
        down_seen: set[int] = set()
        deadline = time.monotonic() + args.cut_seconds
        while time.monotonic() < deadline:
            page = tenant.get("/v1/devices", params={"state": "down", "limit": 500}).json()["items"]
            down_seen.update(d["id"] for d in page)
            time.sleep(1.0)
        unhealthy = next((r for r in tenant.get("/v1/regions").json() if r["name"] == CUT_REGION), {})
        sim.post("/devices", json={"refuse_sources": []}).raise_for_status()
        incidents = fetch(database_url, "SELECT count(*) AS n FROM incidents WHERE opened_at >= to_timestamp($1)",
                          cut_start)[0]["n"]
        false_down = len(down_seen)
    finally:
        for proc in reversed(procs):
            proc.stop()
        redis.cleanup()
        postgres.cleanup()

    print(f"command: .venv/bin/python bench/detection.py --devices {args.devices} --failures {args.failures} "
          f"--interval {args.interval} --cut-seconds {args.cut_seconds:g}")
    print(f"setup: {args.devices} HTTP devices, interval {args.interval} s, 3 regions, FAILURES_TO_DOWN=2, "
          f"quorum 2 of 3; failures injected at random moments over {spread} s")
    print(f"time to detect over {len(detect)} failures: p50 {statistics.median(detect):.1f} s, "
          f"p95 {percentile(detect, 0.95):.1f} s, max {max(detect):.1f} s (min {min(detect):.1f} s)")
    print(f"region cut ({CUT_REGION} refused for {args.cut_seconds:g} s): false DOWN devices {false_down}, "
          f"incidents opened {incidents}; region reported healthy={unhealthy.get('healthy')} "
          f"({unhealthy.get('reason')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
