"""ICMP echo probes over one shared unprivileged socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from collections import deque

from icmplib import ICMPv4Socket
from icmplib.exceptions import ICMPLibError

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.failures import describe
from iot.monitor.probes.common import Done, ProbeResult, ProbeSetupError, failed, is_ip_literal, resolve_then

_ICMP_HEADER = struct.Struct("!BBHHH")
_ECHO_HEADER = _ICMP_HEADER  # type 8 (echo request), code, checksum, identifier, sequence
_ECHO_PAYLOAD = b"my-iot-app-probe"


# Timeouts are swept this often instead of one event-loop timer per echo (a timer per check costs more
# than the echo itself at tens of thousands of checks per second).
_SWEEP_S = 0.01


class _Echo:
    """One echo in flight: finished by its reply (reader callback) or the sweep after its deadline."""

    __slots__ = ("deadline", "done", "sent_at", "timeout_s")

    def __init__(self, done: Done, sent_at: float, timeout_s: float) -> None:
        self.done, self.sent_at, self.timeout_s = done, sent_at, timeout_s
        self.deadline = sent_at + timeout_s


class IcmpProbe:
    """ICMP echo over ONE unprivileged datagram socket shared by all checks in flight.

    icmplib opens the socket; this class multiplexes: each echo gets its own sequence number, a timer
    and a completion callback, and the socket's reader callback completes a check the moment its reply
    arrives, whatever else is in flight (no waiting for the slowest target of a batch). One socket per
    ping (icmplib's async_ping) costs a socket syscall pair per check and cannot reach tens of thousands
    of checks per second. Needs net.ipv4.ping_group_range to include the process's group.

    Echoes in flight are bounded by the caller (the monitor's scheduler): the 16-bit sequence space is
    per socket, so stay well below 65,536 in flight.
    """

    def __init__(self, source_address: str | None = None, egress: EgressPolicy = PUBLIC_ONLY) -> None:
        self._source = source_address
        self._egress = egress  # judges every target before an echo is sent
        self._sock: ICMPv4Socket | None = None
        self._sequence = itertools.count()
        self._pending: dict[tuple[str, int], _Echo] = {}
        # Echoes in send order per timeout value, so each deque is in deadline order; answered ones are
        # skipped by the sweep (and compacted away when they pile up behind a long timeout).
        self._expiry: dict[float, deque[tuple[tuple[str, int], _Echo]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

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
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        pending, self._pending = self._pending, {}
        self._expiry.clear()
        for echo in pending.values():
            echo.done(failed("ICMP probe closed"))

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _on_readable(self) -> None:
        assert self._sock is not None
        raw = self._sock.sock
        now = time.perf_counter
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
            echo = self._pending.pop((source, sequence), None)
            if echo is None:
                continue  # late reply of a timed-out check
            if icmp_type != 0:
                echo.done(failed(f"ICMP type {icmp_type} code {icmp_code}"))
                continue
            latency_ms = (now() - echo.sent_at) * 1000.0
            if latency_ms > echo.timeout_s * 1000.0:
                echo.done(failed(f"timeout after {echo.timeout_s:g}s"))
            else:
                echo.done(ProbeResult(True, round(latency_ms, 3)))

    def begin(self, host: str, timeout_s: float, done: Done) -> None:
        """Send one echo; `done(result)` is called once: on its reply, on its timeout, or on a send error."""
        if self._sock is None:
            done(failed("ICMP probe not started"))
        elif is_ip_literal(host):  # nearly always: no closure on the hot path
            try:
                address = self._egress.connect_address(host)  # cached per literal
            except OSError as exc:
                done(failed(describe(exc)))
                return
            self._send(address, timeout_s, done)
        else:
            resolve_then(host, self._egress, lambda address: self._send(address, timeout_s, done), done)

    def _send(self, address: str, timeout_s: float, done: Done) -> None:
        if self._sock is None:
            done(failed("ICMP probe not started"))
            return
        sequence = next(self._sequence) & 0xFFFF
        key = (address, sequence)
        echo = _Echo(done, time.perf_counter(), timeout_s)
        self._pending[key] = echo
        try:
            # icmplib's send() resolves the address and sets TTL/TOS per packet (three syscalls); the
            # echo request is fixed here, and datagram ICMP sockets get id and checksum from the kernel.
            self._sock.sock.sendto(_ECHO_HEADER.pack(8, 0, 0, 0, sequence) + _ECHO_PAYLOAD, (address, 0))
        except OSError as exc:
            if self._pending.get(key) is echo:
                del self._pending[key]
            done(failed(exc.strerror or str(exc) or type(exc).__name__))
            return
        queue = self._expiry.get(timeout_s)
        if queue is None:
            queue = self._expiry[timeout_s] = deque()
        queue.append((key, echo))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(_SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        """Fail the echoes past their deadline; reschedule while any is pending."""
        self._sweeper = None
        now = time.perf_counter()
        pending = self._pending
        for timeout_s, queue in list(self._expiry.items()):
            while queue and queue[0][1].deadline <= now:
                key, echo = queue.popleft()
                if pending.get(key) is echo:
                    del pending[key]
                    echo.done(failed(f"timeout after {timeout_s:g}s"))
            if not queue:
                del self._expiry[timeout_s]
            elif len(queue) > 4 * len(pending) + 1024:  # mostly answered echoes behind a long timeout
                self._expiry[timeout_s] = deque(item for item in queue if pending.get(item[0]) is item[1])
        if self._expiry:
            self._sweeper = asyncio.get_running_loop().call_later(_SWEEP_S, self._sweep)

    async def check(self, host: str, timeout_s: float) -> ProbeResult:
        future: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
        self.begin(host, timeout_s, lambda result: future.done() or future.set_result(result))
        return await future
