"""ICMP echo probes over one shared unprivileged socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time

from icmplib import ICMPv4Socket
from icmplib.exceptions import ICMPLibError

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.failures import describe
from iot.monitor.probes.common import ProbeResult, ProbeSetupError, failed, resolve

_ICMP_HEADER = struct.Struct("!BBHHH")
_ECHO_HEADER = _ICMP_HEADER  # type 8 (echo request), code, checksum, identifier, sequence
_ECHO_PAYLOAD = b"my-iot-app-probe"


class IcmpProbe:
    """ICMP echo over ONE unprivileged datagram socket shared by all checks in flight.

    icmplib builds and parses the packets; this class multiplexes: each echo gets its own sequence
    number and a future, and a reader callback resolves futures as replies arrive. One socket per ping
    (icmplib's async_ping) costs a socket syscall pair per check and cannot reach tens of thousands of
    checks per second. Needs net.ipv4.ping_group_range to include the process's group.
    """

    def __init__(self, source_address: str | None = None, max_inflight: int = 2048,
                 egress: EgressPolicy = PUBLIC_ONLY) -> None:
        self._source = source_address
        self._egress = egress
        self._sock: ICMPv4Socket | None = None
        self._sequence = itertools.count()
        self._pending: dict[tuple[str, int], tuple[asyncio.Future[float], float]] = {}
        # Echoes in flight are capped: replies beyond the socket buffer would be dropped by the kernel
        # and show up as false timeouts.
        self._max_inflight = max_inflight
        self._room = asyncio.Event()
        self._room.set()

    def start(self) -> None:
        try:
            self._sock = ICMPv4Socket(address=self._source, privileged=False)
        except ICMPLibError as exc:
            raise ProbeSetupError(
                f"cannot open an unprivileged ICMP socket bound to {self._source or 'any address'} ({exc}); "
                "check that MONITOR_SOURCE_ADDRESS is an address of this host, and allow ICMP sockets with "
                'sysctl -w net.ipv4.ping_group_range="0 2147483647"'
            ) from exc
        self._sock.blocking = False
        # Replies of thousands of checks in flight arrive in bursts: a larger buffer avoids drops.
        self._sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        asyncio.get_running_loop().add_reader(self._sock.sock.fileno(), self._on_readable)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.sock.fileno())
            self._sock.close()
            self._sock = None
        for future, _ in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()

    def _on_readable(self) -> None:
        assert self._sock is not None
        raw = self._sock.sock
        while True:
            try:
                packet, (source, _port) = raw.recvfrom(1024)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP errors queued on the socket; the check times out instead
                return
            # Datagram ICMP sockets deliver the ICMP message without the IP header:
            # type, code, checksum, identifier (set by the kernel), sequence.
            if len(packet) < 8:
                continue
            icmp_type, icmp_code, _checksum, _ident, sequence = _ICMP_HEADER.unpack_from(packet)
            entry = self._pending.pop((source, sequence), None)
            if entry is None:
                continue  # late reply of a timed-out check
            if len(self._pending) < self._max_inflight:
                self._room.set()
            future, sent_at = entry
            if future.done():
                continue
            if icmp_type == 0:
                future.set_result((time.perf_counter() - sent_at) * 1000.0)
            else:
                future.set_exception(OSError(f"ICMP type {icmp_type} code {icmp_code}"))

    async def check_many(self, hosts: list[str], timeouts_s: list[float]) -> list[ProbeResult]:
        """Ping many hosts at once: send every echo, then wait once for all replies (no task per check)."""
        if self._sock is None:
            return [failed("ICMP probe not started")] * len(hosts)
        loop = asyncio.get_running_loop()
        sock = self._sock.sock
        entries: list[tuple[tuple[str, int] | None, asyncio.Future[float]]] = []
        for host in hosts:
            while len(self._pending) >= self._max_inflight:
                self._room.clear()
                await self._room.wait()
            future: asyncio.Future[float] = loop.create_future()
            try:
                address = await resolve(host, self._egress)  # judged by the egress policy
                sequence = next(self._sequence) & 0xFFFF
                key: tuple[str, int] | None = (address, sequence)
                self._pending[(address, sequence)] = (future, time.perf_counter())
                sock.sendto(_ECHO_HEADER.pack(8, 0, 0, 0, sequence) + _ECHO_PAYLOAD, (address, 0))
            except OSError as exc:
                key = None
                if not future.done():
                    future.set_exception(exc)
            entries.append((key, future))
        if entries:
            await asyncio.wait([f for _, f in entries], timeout=max(timeouts_s))
        results: list[ProbeResult] = []
        for (key, future), timeout_s in zip(entries, timeouts_s, strict=True):
            if key is not None and self._pending.get(key, (None,))[0] is future:
                del self._pending[key]
                self._room.set()
            if not future.done():
                future.cancel()
                results.append(failed(f"timeout after {timeout_s:g}s"))
            elif future.exception() is not None:
                exc = future.exception()
                results.append(failed(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__))
            elif future.result() > timeout_s * 1000.0:
                results.append(failed(f"timeout after {timeout_s:g}s"))
            else:
                results.append(ProbeResult(True, round(future.result(), 3)))
        return results

    async def check(self, host: str, timeout_s: float) -> ProbeResult:
        if self._sock is None:
            return failed("ICMP probe not started")
        try:
            address = await resolve(host, self._egress)
        except OSError as exc:
            return failed(describe(exc))
        sequence = next(self._sequence) & 0xFFFF
        key = (address, sequence)
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pending[key] = (future, time.perf_counter())
        try:
            # icmplib's send() resolves the address and sets TTL/TOS per packet (three syscalls); the
            # echo request is fixed here, and datagram ICMP sockets get id and checksum from the kernel.
            self._sock.sock.sendto(_ECHO_HEADER.pack(8, 0, 0, 0, sequence) + _ECHO_PAYLOAD, (address, 0))
            async with asyncio.timeout(timeout_s):
                latency = await future
            return ProbeResult(True, round(latency, 3))
        except TimeoutError:
            return failed(f"timeout after {timeout_s:g}s")
        except OSError as exc:
            return failed(exc.strerror or str(exc) or type(exc).__name__)
        finally:
            if self._pending.get(key, (None,))[0] is future:
                del self._pending[key]
                self._room.set()
