"""Probes: HTTP (status + latency), TCP connect and ICMP echo, each bound to an optional source address.

`Prober` puts the kinds behind one per-check interface, `begin(kind, target, timeout_s, done)`: the check
starts at once and `done(result)` is called when IT finishes, whatever else is in flight. The monitor's
scheduler (`iot.monitor.scheduler`) decides which check starts when; `check` and `check_batch` are the
awaitable forms for canaries, tests and benchmarks.
"""

from __future__ import annotations

import asyncio

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.monitor.probes.common import Done, ProbeResult, ProbeSetupError, failed, resolve, split_host_port
from iot.monitor.probes.http import HttpProbe, PlainHttpProbe
from iot.monitor.probes.icmp import IcmpProbe
from iot.monitor.probes.tcp import TcpProbe

__all__ = [
    "Done", "HttpProbe", "IcmpProbe", "PlainHttpProbe", "ProbeResult", "ProbeSetupError", "Prober", "TcpProbe",
    "lane_of", "resolve", "split_host_port",
]

# Checks hold one of two resources while in flight: a socket (HTTP, TCP: file descriptors, ports) or an
# echo on the shared ICMP socket (no descriptor; bounded by the 16-bit sequence space). Each has its own cap.
SOCKET_LANE = "socket"
ICMP_LANE = "icmp"


def lane_of(kind: str) -> str:
    return ICMP_LANE if kind == "icmp" else SOCKET_LANE


class Prober:
    """All probe kinds behind one per-check `begin`, plus awaitable `check`/`check_batch` bounded by
    `concurrency` (the monitor's consumer bounds `begin` itself, per tenant)."""

    def __init__(self, source_address: str | None, concurrency: int, http_keepalive: bool = False,
                 egress: EgressPolicy = PUBLIC_ONLY) -> None:
        # `egress`: what targets may be reached; the default refuses everything but public addresses.
        self.http = HttpProbe(source_address, keepalive=http_keepalive, egress=egress)
        self.plain_http = None if http_keepalive else PlainHttpProbe(source_address, egress)
        self.tcp = TcpProbe(source_address, egress)
        self.icmp = IcmpProbe(source_address, egress=egress)
        self._slots = asyncio.Semaphore(concurrency)

    async def start(self) -> None:
        self.icmp.start()  # first: it is the one that can fail on a misconfigured host
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()
        self.icmp.close()

    def begin(self, kind: str, target: str, timeout_s: float, done: Done) -> None:
        """Start one check now; `done(result)` is called exactly once (possibly before this returns)."""
        if kind == "icmp":
            self.icmp.begin(target, timeout_s, done)
        elif kind == "tcp":
            self.tcp.begin(target, timeout_s, done)
        elif kind == "http":
            if self.plain_http is not None and self.plain_http.handles(target):
                self.plain_http.begin(target, timeout_s, done)
            else:
                self.http.begin(target, timeout_s, done)
        else:
            done(failed(f"unknown check kind {kind!r}"))

    async def check(self, kind: str, target: str, timeout_s: float) -> ProbeResult:
        async with self._slots:
            future: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
            self.begin(kind, target, timeout_s, lambda result: future.done() or future.set_result(result))
            return await future

    async def check_batch(self, checks: list[tuple[str, str, float]]) -> list[ProbeResult]:
        """Probe (kind, target, timeout_s) checks, at most `concurrency` at once; results in the same order."""
        loop = asyncio.get_running_loop()
        results: list[ProbeResult | None] = [None] * len(checks)
        all_done: asyncio.Future[None] = loop.create_future()
        remaining = len(checks)

        def finish(index: int, result: ProbeResult) -> None:
            nonlocal remaining
            results[index] = result
            self._slots.release()
            remaining -= 1
            if remaining == 0 and not all_done.done():
                all_done.set_result(None)

        for index, (kind, target, timeout_s) in enumerate(checks):
            await self._slots.acquire()  # a slot BEFORE the check starts: queued checks cost nothing
            self.begin(kind, target, timeout_s, lambda result, i=index: finish(i, result))
        if checks:
            await all_done
        return [r if r is not None else failed("not probed") for r in results]
