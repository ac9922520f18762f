"""Probes: HTTP (status + latency, or a device's request options and body conditions), TCP connect, ICMP
echo, TLS handshake and certificate expiry, DNS lookups; each bound to an optional source address.

`Prober` puts the kinds behind one per-check interface, `begin(kind, target, timeout_s, done, options)`,
dispatched through `PROBES` (keyed like `iot.checks.KINDS`; a sync test holds them together): the check
starts at once and `done(result)` is called when IT finishes, whatever else is in flight. The monitor's
scheduler (`iot.monitor.scheduler`) decides which check starts when; `check` and `check_batch` are the
awaitable forms for canaries, tests and benchmarks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.monitor.probes.common import Done, ProbeResult, ProbeSetupError, failed, resolve, split_host_port
from iot.monitor.probes.dns import DnsProbe
from iot.monitor.probes.http import HttpProbe, PlainHttpProbe
from iot.monitor.probes.http_conditions import conditions_of
from iot.monitor.probes.icmp import IcmpProbe
from iot.monitor.probes.tcp import TcpProbe
from iot.monitor.probes.tls import TlsProbe

__all__ = [
    "PROBES", "DnsProbe", "Done", "HttpProbe", "IcmpProbe", "PlainHttpProbe", "ProbeResult", "ProbeSetupError",
    "Prober", "TcpProbe", "TlsProbe",
    "lane_of", "resolve", "split_host_port",
]

# Checks hold one of two resources while in flight: a socket (HTTP, TCP: file descriptors, ports) or an
# echo on the shared ICMP socket (no descriptor; bounded by the 16-bit sequence space). Each has its own cap.
SOCKET_LANE = "socket"
ICMP_LANE = "icmp"


def lane_of(kind: str) -> str:
    return ICMP_LANE if kind == "icmp" else SOCKET_LANE


# One check: (target, timeout_s, done, options or None). Kinds without options ignore them.
Begin = Callable[[str, float, Done, "dict[str, Any] | None"], None]


def _without_options(begin: Callable[[str, float, Done], None]) -> Begin:
    return lambda target, timeout_s, done, _options: begin(target, timeout_s, done)


# Which probe checks each scheduled kind (built per Prober, from its probe instances).
PROBES: dict[str, Callable[[Prober], Begin]] = {
    "http": lambda p: p.begin_http,
    "tcp": lambda p: _without_options(p.tcp.begin),
    "icmp": lambda p: _without_options(p.icmp.begin),
    "dns": lambda p: p.dns.begin,
    "tls": lambda p: p.tls.begin,
}


class Prober:
    """All probe kinds behind one per-check `begin`, plus awaitable `check`/`check_batch` bounded by
    `concurrency` (the monitor's consumer bounds `begin` itself, per tenant)."""

    def __init__(self, source_address: str | None, concurrency: int, http_keepalive: bool = False,
                 egress: EgressPolicy = PUBLIC_ONLY, tls_ca_file: str | None = None) -> None:
        # `egress`: what targets may be reached; the default refuses everything but public addresses.
        # `tls_ca_file`: trust for tls checks instead of the system store (self-hosting with a private CA).
        self.http = HttpProbe(source_address, keepalive=http_keepalive, egress=egress)
        self.plain_http = None if http_keepalive else PlainHttpProbe(source_address, egress)
        self.tcp = TcpProbe(source_address, egress)
        self.icmp = IcmpProbe(source_address, egress=egress)
        self.dns = DnsProbe(source_address, egress)
        self.tls = TlsProbe(source_address, egress, ca_file=tls_ca_file)
        self._begin: dict[str, Begin] = {kind: make(self) for kind, make in PROBES.items()}
        self._slots = asyncio.Semaphore(concurrency)

    async def start(self) -> None:
        self.icmp.start()  # first: it is the one that can fail on a misconfigured host
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()
        self.icmp.close()

    def begin(self, kind: str, target: str, timeout_s: float, done: Done,
              options: dict[str, Any] | None = None) -> None:
        """Start one check now; `done(result)` is called exactly once (possibly before this returns)."""
        begin = self._begin.get(kind)
        if begin is None:
            done(failed(f"unknown check kind {kind!r}"))
            return
        begin(target, timeout_s, done, options)

    def begin_http(self, url: str, timeout_s: float, done: Done, options: dict[str, Any] | None = None) -> None:
        if options:  # method, headers, statuses or body conditions: the full client
            try:
                conditions = conditions_of(options)
            except (ValueError, TypeError):
                done(failed("invalid http options"))
                return
            self.http.begin(url, timeout_s, done, conditions)
        elif self.plain_http is not None and self.plain_http.handles(url):
            self.plain_http.begin(url, timeout_s, done)
        else:
            self.http.begin(url, timeout_s, done)

    async def check(self, kind: str, target: str, timeout_s: float,
                    options: dict[str, Any] | None = None) -> ProbeResult:
        async with self._slots:
            future: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
            self.begin(kind, target, timeout_s, lambda result: future.done() or future.set_result(result), options)
            return await future

    async def check_batch(self, checks: list[tuple[Any, ...]]) -> list[ProbeResult]:
        """Probe (kind, target, timeout_s[, options]) checks, at most `concurrency` at once; results in the
        same order."""
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

        for index, check in enumerate(checks):
            await self._slots.acquire()  # a slot BEFORE the check starts: queued checks cost nothing
            self.begin(check[0], check[1], check[2], lambda result, i=index: finish(i, result),
                       check[3] if len(check) > 3 else None)
        if checks:
            await all_done
        return [r if r is not None else failed("not probed") for r in results]
