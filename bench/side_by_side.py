"""One `iot monitor` process against Prometheus blackbox_exporter (HTTP, TCP) and fping (ICMP), side by side.

    .venv/bin/python bench/side_by_side.py [--reps 3] [--checks 6000] [--icmp-checks 20000] [--sustained-checks 60000]

Same loopback targets for every tool, in the same run, interleaved (rep 1: monitor, references; rep 2 ...):
- healthy targets: nginx-light on 8 loopback ports (HTTP GET, TCP connect); 127.1.x.y for ICMP;
- blackholed targets: 127.77.x.y, dropped by an nftables rule in a table of its own (removed afterwards).
Conditions (issue 13's table): all healthy; 10% blackholed at a 5 s timeout (throughput until every check
has a result; 6,000 checks, so both tools end near the 5 s floor); the same sustained (60,000 HTTP/TCP
checks, a run of several timeouts, as a fleet's checks keep coming: both tools at concurrency 1,024 and
4,096, each compared at its best); 10% blackholed at a 60 s timeout (time until the last HEALTHY result is stored, against a
run of the same healthy checks alone; monitor only). The monitor gets its checks the way production does
(batches of 500 in its region's Redis stream) and its results are read back from the results stream; it
runs with TENANT_SHARE=1 (one tenant here). blackbox_exporter is driven by concurrent /probe requests
(Python aiohttp client, as Prometheus would scrape it) at several concurrencies, fping by 1..16 parallel
processes (`-c 1 -r 0 -i 0`); each reference is compared at its best concurrency. CPU seconds per 1,000
checks count the prober process only (not nginx, not Redis, not the driver; Redis is printed apart).
Also printed: how long healthy results take from the end of their probe to the results stream while
their batches hold dead targets (issue 13: within 1 s). Needs root (nftables, fping -i 0) and the Debian
packages nginx-light, prometheus-blackbox-exporter, fping, nftables, redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _blackhole import blackhole, blackholed_address  # noqa: E402
from _peers import blackbox_exporter, cpu_seconds, iot_monitor, nginx, run_fping  # noqa: E402
from servers import RedisServer  # noqa: E402  (tests/servers.py, on the path via _peers)

from iot import protocol  # noqa: E402

BATCH = 500
BLACKBOX_CONCURRENCY = (64, 256, 1024)
# The sustained condition: enough checks that the run lasts several timeouts, as a fleet's checks never stop
# coming. Each dead check holds a slot for the whole timeout, so only high concurrencies are worth running
# (at c, 6,000 dead checks take at least 6,000 x 5 s / c); both tools get the same choice.
SUSTAINED = "dead 10%, 5 s, sustained"
SUSTAINED_CONCURRENCY = (1024, 4096)
FPING_PROCESSES = (1, 4, 16)
DEAD_SHARE = 0.10
DEAD_TIMEOUT_S = 5.0  # the "dead 10%, 5 s" condition
# issue 13's targets: throughput ratio (monitor / reference at its best), all healthy and 10% dead at 5 s
TARGETS = {("http", "healthy"): 4.0, ("tcp", "healthy"): 3.0, ("icmp", "healthy"): 1.0,
           ("http", "dead 10%, 5 s"): 2.0, ("tcp", "dead 10%, 5 s"): 2.0, ("icmp", "dead 10%, 5 s"): 0.9,
           ("http", SUSTAINED): 2.0, ("tcp", SUSTAINED): 2.0}
CPU_TARGETS = {"blackbox_exporter": 0.3, "fping": 1.0}
MONITOR_ENV = {"TENANT_SHARE": "1", "CONCURRENCY": "1000", "ICMP_CONCURRENCY": "10000"}


@dataclass
class Run:
    tool: str
    checks: int
    seconds: float
    cpu_s: float
    ok: int
    last_healthy_s: float | None = None
    lags: list[float] = field(default_factory=list)
    redis_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.checks / self.seconds

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu_s / self.checks * 1000


def make_targets(kind: str, count: int, dead_share: float, ports: list[int]) -> list[tuple[str, bool]]:
    """(target, is_dead) with the dead ones spread evenly, so every batch of the monitor holds some."""
    every = round(1 / dead_share) if dead_share else 0
    out: list[tuple[str, bool]] = []
    for i in range(count):
        dead = bool(every) and i % every == every - 1
        port = ports[i % len(ports)]
        host = blackholed_address(i) if dead else ("127.0.0.1" if kind != "icmp" else
                                                   f"127.1.{(i // 254) % 256}.{i % 254 + 1}")
        target = {"http": f"http://{host}:{port}/t{i}", "tcp": f"{host}:{port}", "icmp": host}[kind]
        out.append((target, dead))
    return out


_regions = itertools.count()


async def monitor_run(redis: RedisServer, kind: str, targets: list[tuple[str, bool]], timeout_ms: int,
                      until_healthy: bool = False, concurrency: int | None = None) -> Run:
    """Checks into a fresh region's stream in batches of 500, results read back until all (or all healthy)
    are stored. The monitor process is new for each run, and killed after it."""
    region = f"bench{os.getpid()}x{next(_regions)}"
    client = aioredis.Redis.from_url(redis.url)
    await client.delete(protocol.RESULTS_STREAM)
    dead = {i for i, (_t, d) in enumerate(targets) if d}
    healthy = len(targets) - len(dead)
    entries = [[i, kind, t, timeout_ms, 1, 300] for i, (t, _d) in enumerate(targets)]
    try:
        env = MONITOR_ENV if concurrency is None else {**MONITOR_ENV, "CONCURRENCY": str(concurrency)}
        with iot_monitor(redis.url, region, env) as pid:
            assert redis.proc is not None
            cpu0, redis0 = cpu_seconds(pid), cpu_seconds(redis.proc.pid)
            started = time.time()
            async with client.pipeline(transaction=False) as pipe:
                for b in range(0, len(entries), BATCH):
                    pipe.xadd(protocol.checks_stream(region), {
                        protocol.CHECKS_FIELD: json.dumps(entries[b : b + BATCH]), protocol.SENT_FIELD: f"{started:.3f}"})
                await pipe.execute()
            got = healthy_got = ok = 0
            last_any = last_healthy = started
            lags: list[float] = []
            cursor = "0-0"
            deadline = time.monotonic() + timeout_ms / 1000 * 3 + 120
            while (healthy_got < healthy) if until_healthy else (got < len(targets)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"monitor run incomplete: {got} of {len(targets)} results")
                reply = await client.xread({protocol.RESULTS_STREAM: cursor}, count=1000, block=1000)
                for _stream, messages in reply or []:
                    for message_id, fields in messages:
                        cursor = message_id.decode()
                        stored_at = int(cursor.split("-")[0]) / 1000
                        for device, good, latency, _error, checked_at in json.loads(fields[b"results"]):
                            got += 1
                            ok += good
                            last_any = max(last_any, stored_at)
                            if device not in dead:
                                healthy_got += 1
                                last_healthy = max(last_healthy, stored_at)
                                if good and latency is not None:
                                    lags.append(stored_at - (checked_at + latency / 1000))
            cpu, redis_cpu = cpu_seconds(pid) - cpu0, cpu_seconds(redis.proc.pid) - redis0
    finally:
        await client.aclose()
    checks = healthy if until_healthy else len(targets)
    seconds = (last_healthy if until_healthy else last_any) - started
    tool = "iot monitor" if concurrency is None else f"iot monitor CONCURRENCY={concurrency}"
    return Run(tool, checks, seconds, cpu, ok, last_healthy - started, lags, redis_cpu)


async def blackbox_run(base: str, pid: int, kind: str, targets: list[tuple[str, bool]], concurrency: int) -> Run:
    module = "http_2xx" if kind == "http" else "tcp_connect"
    urls = [f"{base}/probe?module={module}&target={quote(t, safe='')}" for t, _d in targets]
    next_index = iter(range(len(urls)))
    ok = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for index in next_index:
            async with session.get(urls[index]) as response:
                if "\nprobe_success 1" in await response.text():
                    ok += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu0 = cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu0
    return Run(f"blackbox_exporter c={concurrency}", len(targets), seconds, cpu, ok)


def fping_run(targets: list[tuple[str, bool]], timeout_ms: int, processes: int) -> Run:
    replies, seconds, cpu = run_fping([t for t, _d in targets], timeout_ms, processes)
    return Run(f"fping x{processes}", len(targets), seconds, cpu, replies)


async def bench(args: argparse.Namespace) -> None:
    runs: dict[tuple[str, str], list[Run]] = defaultdict(list)  # (kind, condition) -> runs of every tool
    sixty: dict[str, list[tuple[float, float]]] = defaultdict(list)  # kind -> (with dead, healthy alone)
    redis = RedisServer().start()
    try:
        with nginx(8) as ports, blackbox_exporter(DEAD_TIMEOUT_S) as (bb_base, bb_pid), blackhole():
            for rep in range(1, args.reps + 1):
                for kind in args.kinds:
                    count = args.icmp_checks if kind == "icmp" else args.checks
                    for condition, share in (("healthy", 0.0), ("dead 10%, 5 s", DEAD_SHARE)):
                        targets = make_targets(kind, count, share, ports)
                        runs[(kind, condition)].append(await monitor_run(redis, kind, targets, int(DEAD_TIMEOUT_S * 1000)))
                        if kind == "icmp":
                            for processes in FPING_PROCESSES:
                                runs[(kind, condition)].append(fping_run(targets, int(DEAD_TIMEOUT_S * 1000), processes))
                        else:
                            for concurrency in BLACKBOX_CONCURRENCY:
                                runs[(kind, condition)].append(
                                    await blackbox_run(bb_base, bb_pid, kind, targets, concurrency))
                        _progress(rep, kind, condition, runs[(kind, condition)][-4:])
                    if kind != "icmp" and args.sustained_checks:
                        targets = make_targets(kind, args.sustained_checks, DEAD_SHARE, ports)
                        for concurrency in SUSTAINED_CONCURRENCY:
                            runs[(kind, SUSTAINED)].append(await monitor_run(
                                redis, kind, targets, int(DEAD_TIMEOUT_S * 1000), concurrency=concurrency))
                        for concurrency in SUSTAINED_CONCURRENCY:
                            runs[(kind, SUSTAINED)].append(await blackbox_run(bb_base, bb_pid, kind, targets, concurrency))
                        _progress(rep, kind, SUSTAINED, runs[(kind, SUSTAINED)][-4:])
                    targets = make_targets(kind, count, DEAD_SHARE, ports)
                    with_dead = await monitor_run(redis, kind, targets, 60_000, until_healthy=True)
                    alone = await monitor_run(redis, kind, [t for t in targets if not t[1]], 60_000)
                    sixty[kind].append((with_dead.seconds, alone.seconds))
                    runs[(kind, "dead 10%, 60 s")].append(with_dead)
                    print(f"rep {rep} {kind} dead 10%, 60 s: last healthy result {with_dead.seconds:.2f} s, "
                          f"healthy checks alone {alone.seconds:.2f} s", flush=True)
    finally:
        redis.cleanup()
    report(runs, sixty, args)


def _progress(rep: int, kind: str, condition: str, latest: list[Run]) -> None:
    figures = ", ".join(f"{r.tool} {r.rate:,.0f}/s" for r in latest)
    print(f"rep {rep} {kind} {condition}: {figures}", flush=True)


def _median_min(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} / {min(values):,.0f}"


def report(runs: dict[tuple[str, str], list[Run]], sixty: dict[str, list[tuple[float, float]]],
           args: argparse.Namespace) -> None:
    print(f"\nside by side, {args.reps} interleaved repetitions, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; medians / minimums")
    print("| kind | condition | tool | checks/s | CPU s per 1,000 checks | checks ok |")
    print("|---|---|---|---|---|---|")
    for (kind, condition), all_runs in runs.items():
        if condition.endswith("60 s"):
            continue
        by_tool: dict[str, list[Run]] = defaultdict(list)
        for run in all_runs:
            by_tool[run.tool].append(run)
        for tool, tool_runs in by_tool.items():
            cpu = [r.cpu_per_1000 for r in tool_runs]
            print(f"| {kind} | {condition} | {tool} | {_median_min([r.rate for r in tool_runs])} | "
                  f"{statistics.median(cpu):.3f} / {min(cpu):.3f} | {statistics.median([r.ok for r in tool_runs]):,.0f} "
                  f"of {tool_runs[0].checks:,} |")
    # With dead targets no prober finishes before the timeout: a reference that reaches that floor too
    # caps the ratio any prober can show at (the reference's time / the timeout).
    print("\n| kind | condition | monitor vs reference, each at its best | throughput ratio (median / min) | target | "
          "ceiling (reference's time / timeout) | CPU per check ratio | target |")
    print("|---|---|---|---|---|---|---|---|")
    for (kind, condition), all_runs in runs.items():
        if condition.endswith("60 s"):
            continue
        monitors: dict[str, list[Run]] = defaultdict(list)
        refs: dict[str, list[Run]] = defaultdict(list)
        for run in all_runs:
            (monitors if run.tool.startswith("iot monitor") else refs)[run.tool].append(run)
        # each side at its best configuration (the sustained condition runs the monitor at two CONCURRENCYs)
        mine = max(monitors.values(), key=lambda runs: statistics.median([r.rate for r in runs]))
        best_tool, best = max(refs.items(), key=lambda item: statistics.median([r.rate for r in item[1]]))
        ratio = statistics.median([r.rate for r in mine]) / statistics.median([r.rate for r in best])
        ratio_min = min(r.rate for r in mine) / min(r.rate for r in best)
        cpu_ratio = statistics.median([r.cpu_per_1000 for r in mine]) / statistics.median(
            [r.cpu_per_1000 for r in best])
        target = TARGETS[(kind, condition)]
        ceiling = (f"{statistics.median([r.seconds for r in best]) / DEAD_TIMEOUT_S:.2f}x"
                   if condition.startswith("dead") else "-")
        cpu_target = CPU_TARGETS["fping" if kind == "icmp" else "blackbox_exporter"]
        print(f"| {kind} | {condition} | {mine[0].tool} vs {best_tool} | {ratio:.2f}x / {ratio_min:.2f}x | >= {target}x "
              f"{'met' if ratio >= target else 'MISSED'} | {ceiling} | {cpu_ratio:.2f}x | <= {cpu_target}x "
              f"{'met' if cpu_ratio <= cpu_target else 'MISSED'} |")
    print("\n| kind | 10% dead, 60 s timeout: last healthy result stored | the same healthy checks alone | "
          "ratio (median / max) | target |")
    print("|---|---|---|---|---|")
    for kind, pairs in sixty.items():
        ratios = [a / b for a, b in pairs]
        print(f"| {kind} | {statistics.median([a for a, _ in pairs]):.2f} s | {statistics.median([b for _, b in pairs]):.2f} s "
              f"| {statistics.median(ratios):.2f}x / {max(ratios):.2f}x | <= 1.25x "
              f"{'met' if statistics.median(ratios) <= 1.25 else 'MISSED'} |")
    print("\nhealthy results from the end of their probe to the results stream, batches holding dead targets "
          "(target: within 1 s):")
    for (kind, condition), all_runs in runs.items():
        lags = sorted(lag for r in all_runs if r.tool.startswith("iot monitor") for lag in r.lags)
        if condition.startswith("dead") and lags:
            p = lambda q, lags=lags: lags[min(len(lags) - 1, int(q * len(lags)))]  # noqa: E731
            over = sum(1 for x in lags if x > 1.0)
            print(f"  {kind}, {condition}: p50 {p(0.5) * 1000:.0f} ms, p99 {p(0.99) * 1000:.0f} ms, max "
                  f"{lags[-1] * 1000:.0f} ms over {len(lags):,} results; {over:,} ({over / len(lags):.1%}) over 1 s")
    redis_cpu = [r.redis_cpu_s / r.checks * 1000 for rs in runs.values() for r in rs if r.tool.startswith("iot monitor")]
    print(f"Redis CPU on top of the monitor's: median {statistics.median(redis_cpu):.3f} s per 1,000 checks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--checks", type=int, default=6000, help="checks per HTTP/TCP run")
    parser.add_argument("--icmp-checks", type=int, default=20000, help="checks per ICMP run")
    parser.add_argument("--sustained-checks", type=int, default=60000,
                        help=f"checks per HTTP/TCP run of the '{SUSTAINED}' condition (0: skip it)")
    parser.add_argument("--kinds", nargs="+", default=["http", "tcp", "icmp"], choices=["http", "tcp", "icmp"])
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("side_by_side needs root: an nftables rule blackholes part of the targets, fping uses -i 0")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
