"""Probes: HTTP (status + latency), TCP connect and ICMP echo, each bound to an optional source address.

`Prober` puts the kinds behind one interface with a bound on probes in flight; the consumer hands it
whole batches (`check_batch`).
"""

from __future__ import annotations

import asyncio

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.monitor.probes.common import ProbeResult, ProbeSetupError, failed, resolve, split_host_port
from iot.monitor.probes.http import HttpProbe, PlainHttpProbe
from iot.monitor.probes.icmp import IcmpProbe
from iot.monitor.probes.tcp import TcpProbe

__all__ = [
    "HttpProbe", "IcmpProbe", "PlainHttpProbe", "ProbeResult", "ProbeSetupError", "Prober", "TcpProbe",
    "resolve", "split_host_port",
]


class Prober:
    """All probe kinds behind one `check(kind, target, timeout_s)`, with a bound on probes in flight."""

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

    async def check_batch(self, checks: list[tuple[str, str, float]]) -> list[ProbeResult]:
        """Probe (kind, target, timeout_s) checks; results in the same order.

        ICMP, TCP and plain-http checks of the batch run without a task each. Other HTTP checks take a
        slot of the concurrency bound BEFORE their task is created, so thousands of queued checks are a
        loop position, not thousands of tasks waiting on a semaphore.
        """
        results: list[ProbeResult | None] = [None] * len(checks)
        icmp = [i for i, c in enumerate(checks) if c[0] == "icmp"]
        tcp = [i for i, c in enumerate(checks) if c[0] == "tcp"]
        plain = [i for i, c in enumerate(checks)
                 if c[0] == "http" and self.plain_http is not None and self.plain_http.handles(c[1])]
        icmp_job = tcp_job = plain_job = None
        if icmp:
            icmp_job = asyncio.ensure_future(
                self.icmp.check_many([checks[i][1] for i in icmp], [checks[i][2] for i in icmp])
            )
        if tcp:
            tcp_job = asyncio.ensure_future(
                self.tcp.check_many([checks[i][1] for i in tcp], [checks[i][2] for i in tcp], self._slots)
            )
        if plain:
            assert self.plain_http is not None
            plain_job = asyncio.ensure_future(
                self.plain_http.check_many([checks[i][1] for i in plain], [checks[i][2] for i in plain], self._slots)
            )
        plain_set = set(plain)
        tasks: list[asyncio.Task[None]] = []

        async def run(index: int, kind: str, target: str, timeout_s: float) -> None:
            try:
                results[index] = await self._check_unbounded(kind, target, timeout_s)
            finally:
                self._slots.release()

        for index, (kind, target, timeout_s) in enumerate(checks):
            if kind in ("icmp", "tcp") or index in plain_set:
                continue
            await self._slots.acquire()
            tasks.append(asyncio.create_task(run(index, kind, target, timeout_s)))
        if tasks:
            await asyncio.gather(*tasks)
        for indexes, job in ((icmp, icmp_job), (tcp, tcp_job), (plain, plain_job)):
            if job is not None:
                for i, result in zip(indexes, await job, strict=True):
                    results[i] = result
        return [r if r is not None else failed("not probed") for r in results]

    async def check(self, kind: str, target: str, timeout_s: float) -> ProbeResult:
        async with self._slots:
            return await self._check_unbounded(kind, target, timeout_s)

    async def _check_unbounded(self, kind: str, target: str, timeout_s: float) -> ProbeResult:
        if kind == "http":
            if self.plain_http is not None and self.plain_http.handles(target):
                return await self.plain_http.check(target, timeout_s)
            return await self.http.check(target, timeout_s)
        if kind == "tcp":
            return await self.tcp.check(target, timeout_s)
        if kind == "icmp":
            return await self.icmp.check(target, timeout_s)
        return failed(f"unknown check kind {kind!r}")
