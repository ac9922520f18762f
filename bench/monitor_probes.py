"""Monitor probe throughput for ONE process, against the device simulator on loopback.

    .venv/bin/python bench/monitor_probes.py [--checks 20000] [--seconds 15]

Runs `iot simulate` (200 HTTP + 200 TCP devices), then drives the monitor's own Prober.check_batch
(the code path the consumer uses, batches of 500, concurrency bound 1000) from source 127.0.0.2:
- HTTP with a new connection per check, HTTP with keep-alive, TCP connect, ICMP echo to 127.0.0.1.
Each figure is bounded by a check count and a time budget, whichever comes first.
Targets per process: >= 2,000 HTTP checks/s (new connections), >= 5,000 TCP, >= 20,000 ICMP.
Needs ping sockets for ICMP: sysctl -w net.ipv4.ping_group_range="0 2147483647".
The simulator is one Python process too: on a small machine it shares the CPU with the prober, so
the HTTP/TCP figures are lower bounds of what the monitor does against real devices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time

import httpx

from iot.devtools.servers import free_port, free_port_range
from iot.egress import EgressPolicy
from iot.monitor.probes import Prober

SOURCE = "127.0.0.2"
LOOPBACK = EgressPolicy.parse("127.0.0.0/8")  # the bench's servers; every check still passes the policy
BATCH = 500
CONCURRENCY = 1000
TARGETS = {"http_new_connection": 2000, "http_keepalive": None, "tcp": 5000, "icmp": 20000}


@contextlib.contextmanager
def simulator(http: int, tcp: int):
    base, control = free_port_range(http + tcp), free_port()
    with tempfile.NamedTemporaryFile(prefix="bench-sim-", suffix=".log") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iot", "simulate", "--devices", str(http), "--tcp-devices", str(tcp),
             "--base-port", str(base), "--control-port", str(control)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{control}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"simulator did not start:\n{log.read().decode(errors='replace')}")
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            proc.wait(15)


async def measure(
    prober: Prober, kind: str, targets: list[str], checks: int, seconds: float
) -> tuple[float, float, int, int]:
    """(checks/s wall clock, checks per CPU-second of this process, done, failed), several batches in
    flight like the consumer. The CPU figure is what one fully used core would do (shared machines)."""
    done = failed = 0
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    inflight: set[asyncio.Task] = set()
    next_target = 0

    def batch() -> list[tuple[str, str, float]]:
        nonlocal next_target
        out = []
        for _ in range(BATCH):
            out.append((kind, targets[next_target % len(targets)], 5.0))
            next_target += 1
        return out

    issued = 0
    while (issued < checks and time.perf_counter() < deadline) or inflight:
        while len(inflight) < 8 and issued < checks and time.perf_counter() < deadline:
            inflight.add(asyncio.create_task(prober.check_batch(batch())))
            issued += BATCH
        finished, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            results = task.result()
            done += len(results)
            failed += sum(1 for r in results if not r.ok)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return done / elapsed, done / max(cpu, 1e-9), done, failed


async def run(args: argparse.Namespace, base: int) -> list[tuple[str, float, float, int, int]]:
    http_targets = [f"http://127.0.0.1:{base + i}/health" for i in range(200)]
    tcp_targets = [f"127.0.0.1:{base + 200 + i}" for i in range(200)]
    rows = []
    for name, kind, targets, keepalive, count in (
        ("http_new_connection", "http", http_targets, False, args.checks),
        ("http_keepalive", "http", http_targets, True, args.checks),
        ("tcp", "tcp", tcp_targets, False, args.checks),
        ("icmp", "icmp", ["127.0.0.1"], False, args.checks * 5),
    ):
        prober = Prober(SOURCE, CONCURRENCY, http_keepalive=keepalive, egress=LOOPBACK)
        await prober.start()
        try:
            await measure(prober, kind, targets, BATCH * 2, 5)  # warm-up (connections, caches)
            rate, cpu_rate, done, failed = await measure(prober, kind, targets, count, args.seconds)
        finally:
            await prober.close()
        rows.append((name, rate, cpu_rate, done, failed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=20000, help="checks per HTTP/TCP figure (ICMP: 5x)")
    parser.add_argument("--seconds", type=float, default=15.0, help="time budget per figure")
    args = parser.parse_args()
    with simulator(200, 200) as base:
        rows = asyncio.run(run(args, base))
    print(f"one monitor process, source {SOURCE}, batches of {BATCH}, concurrency {CONCURRENCY}, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})")
    print(f"{'probe':22} {'checks/s':>10} {'per CPU-s':>10} {'checks':>8} {'failed':>7}  target (wall clock)")
    for name, rate, cpu_rate, done, failed in rows:
        target = TARGETS[name]
        verdict = "-" if target is None else f">= {target:,}: {'OK' if rate >= target else 'SHORT'}"
        print(f"{name:22} {rate:10,.0f} {cpu_rate:10,.0f} {done:8,} {failed:7,}  {verdict}")


if __name__ == "__main__":
    main()
