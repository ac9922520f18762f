"""TCP probes: up when the handshake completes within the timeout, to an address the egress policy allows."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.monitor.probes.common import (
    Done,
    ProbeResult,
    elapsed_ms,
    failed,
    prepare_probe_socket,
    resolve_then,
    split_host_port,
)


class TcpProbe:
    """Connect and close; up when the handshake completes within the timeout."""

    def __init__(self, source_address: str | None = None, egress: EgressPolicy = PUBLIC_ONLY) -> None:
        self._source = source_address
        self._egress = egress

    async def check(self, target: str, timeout_s: float) -> ProbeResult:
        """One check, awaited (canaries, tests); the same code path as `begin`."""
        future: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
        self.begin(target, timeout_s, lambda result: future.done() or future.set_result(result))
        return await future

    def begin(self, target: str, timeout_s: float, done: Done) -> None:
        """Start one connect check; `done(result)` is called once, when it connects, fails or times out.

        Non-blocking connect() often completes at once (loopback, LAN); a connect still in progress gets
        a writer callback and a timer, whichever fires first records the result and closes the socket.
        No task per check: thousands in flight are a few callbacks each.
        """
        try:
            host, port = split_host_port(target)
        except ValueError as exc:
            done(failed(str(exc)))
            return
        resolve_then(host, self._egress, lambda address: self._connect(address, port, timeout_s, done), done)

    def _connect(self, address: str, port: int, timeout_s: float, done: Done) -> None:
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:  # e.g. out of file descriptors: this check fails, the others go on
            done(failed(exc.strerror or type(exc).__name__))
            return
        sock.setblocking(False)
        prepare_probe_socket(sock)
        start = time.perf_counter()
        try:
            if self._source:
                sock.bind((self._source, 0))
            err = sock.connect_ex((address, port))
        except OSError as exc:
            err = exc.errno or -1
        if err == errno.EINPROGRESS:
            _PendingConnect(asyncio.get_running_loop(), sock, start, timeout_s, done)
            return
        sock.close()
        done(ProbeResult(True, elapsed_ms(start)) if err == 0 else failed(os.strerror(err)))


class _PendingConnect:
    """One connect in progress: finished by writability (connected or refused) or by its timer."""

    __slots__ = ("_done", "_finished", "_loop", "_sock", "_start", "_timeout_s", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, start: float, timeout_s: float,
                 done: Done) -> None:
        self._loop, self._sock, self._start, self._timeout_s = loop, sock, start, timeout_s
        self._done, self._finished = done, False
        loop.add_writer(sock.fileno(), self._writable)
        self._timer = loop.call_later(timeout_s, self._timed_out)

    def _writable(self) -> None:
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._finish(failed(os.strerror(err)) if err else ProbeResult(True, elapsed_ms(self._start)))

    def _timed_out(self) -> None:
        self._finish(failed(f"timeout after {self._timeout_s:g}s"))

    def _finish(self, result: ProbeResult) -> None:
        if self._finished:
            return
        self._finished = True
        self._timer.cancel()
        self._loop.remove_writer(self._sock.fileno())
        self._sock.close()
        self._done(result)
