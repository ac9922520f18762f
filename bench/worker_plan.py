"""Worker planning speed: one tick for 100,000 devices in 6 regions (target <= 0.5 s).

    .venv/bin/python bench/worker_plan.py

Figures:
- index build: bucketing 100,000 devices by interval and phase (done once per device-table reload);
- steady tick: plan the checks due in one second (intervals 30/60/300 s) and encode them in batches;
- full tick (worst case): EVERY device due in the same tick, e.g. a leader catching up a whole interval;
- dispatch: the full tick sent to 6 regions on a local redis-server (one fenced XADD per batch, one
  MULTI/EXEC pipeline), when redis-server is installed.
The plan is independent of the region count: one payload per batch is shared by every region.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time

from iot.worker.catalog import Device
from iot.worker.planner import Schedule, batch_payloads

DEVICES = 100_000
REGIONS = [f"region-{i}" for i in range(6)]
BATCH = 500
TARGET_S = 0.5


def devices(n: int, intervals: tuple[int, ...]) -> list[Device]:
    return [
        Device(id=i, tenant_id=1 + i % 50, name=f"device-{i}", kind=("http", "tcp", "icmp")[i % 3],
               target=f"http://10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:8080/health",
               interval_s=intervals[i % len(intervals)], timeout_ms=5000)
        for i in range(1, n + 1)
    ]


def best_of(runs: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


@contextlib.contextmanager
def redis_server():
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


async def dispatch_full(url: str, payloads: list[str]) -> float:
    import redis.asyncio as aioredis

    from iot.worker.dispatch import Dispatcher
    from iot.worker.lock import LeaderLock

    client = aioredis.Redis.from_url(url)
    lock = LeaderLock(client, "bench", ttl_seconds=60)
    assert await lock.acquire()
    dispatcher = Dispatcher(client)
    await dispatcher.dispatch(lock.token, REGIONS, payloads[:1], 0)  # load the script
    started = time.perf_counter()
    outcome = await dispatcher.dispatch(lock.token, REGIONS, payloads, 1)
    elapsed = time.perf_counter() - started
    assert outcome.batches == len(payloads) * len(REGIONS)
    await client.aclose()
    return elapsed


def main() -> None:
    fleet = devices(DEVICES, (30, 60, 300))
    build_s, schedule = best_of(3, lambda: Schedule(fleet))
    assert isinstance(schedule, Schedule)
    second = int(time.time())
    steady_s, steady = best_of(20, lambda: batch_payloads(schedule.due(second), BATCH))
    uniform = Schedule(devices(DEVICES, (60,)))
    full_s, full = best_of(5, lambda: batch_payloads(uniform.due_between(second, second + 59), BATCH))
    assert isinstance(full, list) and sum(p.count("],[") + 1 for p in full) == DEVICES

    print(f"devices {DEVICES:,} x regions {len(REGIONS)}, batch size {BATCH}")
    print(f"index build (per reload)          {build_s * 1000:8.1f} ms")
    print(f"steady tick plan (1 s of checks)  {steady_s * 1000:8.2f} ms  ({len(steady)} batches per region)")
    verdict = "OK" if full_s <= TARGET_S else "SHORT"
    print(f"full tick plan (all devices due)  {full_s * 1000:8.1f} ms  ({len(full)} batches per region, "
          f"{DEVICES * len(REGIONS):,} checks)  target <= {TARGET_S * 1000:.0f} ms: {verdict}")
    with redis_server() as url:
        if url is None:
            print("dispatch: redis-server not installed, skipped")
        else:
            elapsed = asyncio.run(dispatch_full(url, full))
            print(f"full tick dispatch to 6 regions    {elapsed * 1000:8.1f} ms  "
                  f"({len(full) * len(REGIONS)} fenced XADDs in one MULTI/EXEC, local redis-server)")


if __name__ == "__main__":
    main()
