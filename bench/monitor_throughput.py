"""Steady throughput of one `iot monitor` process: checks/s and CPU per check, fed through Redis.

    .venv/bin/python bench/monitor_throughput.py [--kind icmp|http|tcp] [--checks 20000] [--rounds 15]

One monitor (TENANT_SHARE=1), all targets healthy on loopback (nginx-light on 8 ports for HTTP/TCP,
127.1.x.y for ICMP). Each round puts `--checks` checks into the region's stream in batches of 500 and waits
until every result is in the results stream; the same process serves every round, so start-up costs
(process, first egress judgments) drop out, unlike bench/side_by_side.py's fresh process per run. Prints
checks/s over all rounds, the monitor's user and system CPU per check and its peak resident memory. Use it
to compare two commits back to back. ICMP needs net.ipv4.ping_group_range to include root's group.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import iot_monitor, nginx, user_system_seconds  # noqa: E402
from servers import RedisServer  # noqa: E402
from side_by_side import BATCH, MONITOR_ENV, make_targets  # noqa: E402

from iot import protocol  # noqa: E402


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def bench(args: argparse.Namespace) -> None:
    redis = RedisServer().start()
    client = aioredis.Redis.from_url(redis.url)
    try:
        with nginx(8) as ports, iot_monitor(redis.url, "throughput", MONITOR_ENV) as pid:
            targets = make_targets(args.kind, args.checks, 0.0, ports)
            entries = [[i, args.kind, target, 5000, 1, 300] for i, (target, _dead) in enumerate(targets)]
            user0, sys0 = user_system_seconds(pid)
            started = time.perf_counter()
            for _round in range(args.rounds):
                await client.delete(protocol.RESULTS_STREAM)
                async with client.pipeline(transaction=False) as pipe:
                    for b in range(0, len(entries), BATCH):
                        pipe.xadd(protocol.checks_stream("throughput"), {
                            protocol.CHECKS_FIELD: json.dumps(entries[b : b + BATCH]),
                            protocol.SENT_FIELD: f"{time.time():.3f}"})
                    await pipe.execute()
                got, cursor = 0, "0-0"
                while got < len(entries):
                    reply = await client.xread({protocol.RESULTS_STREAM: cursor}, count=1000, block=1000)
                    for _stream, messages in reply or []:
                        for message_id, fields in messages:
                            cursor = message_id.decode()
                            got += len(json.loads(fields[b"results"]))
            seconds = time.perf_counter() - started
            user1, sys1 = user_system_seconds(pid)
            total = len(entries) * args.rounds
            print(f"{args.kind}: {total:,} checks in {seconds:.2f} s: {total / seconds:,.0f} checks/s; CPU per check "
                  f"{(user1 - user0) / total * 1e6:.1f} us user + {(sys1 - sys0) / total * 1e6:.1f} us system; "
                  f"peak memory {_peak_rss_mb(pid):.0f} MB")
    finally:
        await client.aclose()
        redis.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["icmp", "http", "tcp"], default="icmp")
    parser.add_argument("--checks", type=int, default=20000, help="checks per round")
    parser.add_argument("--rounds", type=int, default=15)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
