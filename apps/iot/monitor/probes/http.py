"""HTTP probes: status and latency; a new connection per check by default, or aiohttp with keep-alive.
Devices with options (method, headers, body, statuses, body conditions) always use aiohttp.

Both connect only where the egress policy allows: the plain probe resolves and judges the host itself,
aiohttp gets an `EgressResolver` (and IP-literal URLs, which skip resolvers, are judged before the request).
Neither reports anything the server sent beyond the status code.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import socket
import time
from urllib.parse import urlsplit

import aiohttp

from iot import failures
from iot.egress import PUBLIC_ONLY, EgressPolicy, EgressResolver
from iot.monitor.probes.common import (
    Done,
    ProbeResult,
    elapsed_ms,
    failed,
    failed_because,
    prepare_probe_socket,
    resolve_then,
)
from iot.monitor.probes.http_conditions import BODY_TOO_LARGE, Conditions, read_capped


def _http_socket(addr_info: tuple) -> socket.socket:  # aiohttp socket_factory
    family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setblocking(False)
    prepare_probe_socket(sock)
    return sock


class HttpProbe:
    """GET a URL; up when the status is below 400. One connection per check unless keep-alive is on."""

    def __init__(self, source_address: str | None = None, keepalive: bool = False,
                 egress: EgressPolicy = PUBLIC_ONLY) -> None:
        self._source = source_address
        self._keepalive = keepalive
        self._egress = egress
        self._session: aiohttp.ClientSession | None = None
        self._running: set[asyncio.Task[ProbeResult]] = set()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,  # concurrency is bounded by the monitor's semaphore, not the pool
            force_close=not self._keepalive,
            local_addr=(self._source, 0) if self._source else None,
            resolver=EgressResolver(self._egress),
            ttl_dns_cache=300,  # caches what the resolver allowed: still the checked addresses
            socket_factory=_http_socket,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": "my-iot-app-monitor"}, auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # probes are stateless; skip cookie bookkeeping
            skip_auto_headers=("Accept-Encoding",),
        )
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def begin(self, url: str, timeout_s: float, done: Done, conditions: Conditions | None = None) -> None:
        """Start one check as a task (aiohttp needs one); `done(result)` is called when it ends."""
        task = asyncio.get_running_loop().create_task(self.check(url, timeout_s, conditions))
        self._running.add(task)

        def finished(t: asyncio.Task[ProbeResult]) -> None:
            self._running.discard(t)
            if t.cancelled():
                done(failed("probe cancelled"))
            elif t.exception() is not None:
                done(failed(type(t.exception()).__name__))
            else:
                done(t.result())

        task.add_done_callback(finished)

    async def check(self, url: str, timeout_s: float, conditions: Conditions | None = None) -> ProbeResult:
        """One check; `conditions` (an http device's options) set the request and what counts as up."""
        assert self._session is not None, "HttpProbe.start() first"
        start = time.perf_counter()
        try:
            timeout = self._timeouts.get(timeout_s)
            if timeout is None:
                timeout = self._timeouts[timeout_s] = aiohttp.ClientTimeout(total=timeout_s)
            # IP literals skip the resolver: judge them here (names: the connector's EgressResolver)
            self._egress.check_unresolved(urlsplit(url).hostname or "")
            if conditions is not None:
                return await self._check_conditions(url, timeout, conditions, start)
            async with self._session.get(url, timeout=timeout, allow_redirects=False) as resp:
                latency = elapsed_ms(start)
                if self._keepalive:
                    # The connection is reused: drain the body, but only a small one; a bigger or
                    # endless body closes the connection instead of growing our memory.
                    await _drain_or_close(resp)
                # else the connection closes right after the headers: the body is not needed
                if resp.status >= 400:
                    return ProbeResult(False, latency, failures.http_status(resp.status))
                return ProbeResult(True, latency)
        except TimeoutError:
            return failed(f"timeout after {timeout_s:g}s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return failed_because(exc)


    async def _check_conditions(self, url: str, timeout: aiohttp.ClientTimeout, conditions: Conditions,
                                start: float) -> ProbeResult:
        assert self._session is not None
        async with self._session.request(conditions.method, url, headers=conditions.headers or None,
                                         data=conditions.body, timeout=timeout, allow_redirects=False) as resp:
            latency = elapsed_ms(start)
            body = None
            if conditions.reads_body:
                body = await read_capped(resp.content)
                if body is None:
                    resp.close()  # the rest stays unread: the connection cannot be reused
                    return ProbeResult(False, latency, BODY_TOO_LARGE)
            elif self._keepalive:
                await _drain_or_close(resp)
            return conditions.judge(resp.status, body, latency)


# Keep-alive probes read at most this much of a body to reuse the connection.
_DRAIN_LIMIT = 64 * 1024


async def _drain_or_close(resp: aiohttp.ClientResponse) -> None:
    if resp.content_length is not None and resp.content_length <= _DRAIN_LIMIT:
        await resp.content.readexactly(resp.content_length)
    else:
        resp.close()


@functools.lru_cache(maxsize=65536)
def _parse_plain_url(url: str) -> tuple[str, int, bytes]:
    """(host, port, request bytes) for an http:// URL; ValueError naming the URL otherwise."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"http target {url!r} has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    request = (f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: my-iot-app-monitor\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1", "replace")
    return parts.hostname, parts.port or 80, request


def _status_of(line: bytes) -> int | None:
    """The status code of an HTTP status line, None when it is not one (its bytes are never reported)."""
    parts = line.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() and len(parts[1]) == 3:
        return int(parts[1])
    return None


class PlainHttpProbe:
    """Plain-http checks with a new connection each: connect, one GET, read the status line, close.

    A probe needs the status and the time to it, not an HTTP client: each check is a small callback
    state machine on a non-blocking socket (no task, no transport), which more than doubles the checks
    per second per process compared with aiohttp. https URLs and keep-alive mode use `HttpProbe`.
    """

    def __init__(self, source_address: str | None = None, egress: EgressPolicy = PUBLIC_ONLY) -> None:
        self._source = source_address
        self._egress = egress

    @staticmethod
    def handles(url: str) -> bool:
        return url.startswith("http://")

    async def check(self, url: str, timeout_s: float) -> ProbeResult:
        future: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
        self.begin(url, timeout_s, lambda result: future.done() or future.set_result(result))
        return await future

    def begin(self, url: str, timeout_s: float, done: Done) -> None:
        """Start one check; `done(result)` is called once, with the status line's verdict or the failure."""
        try:
            host, port, request = _parse_plain_url(url)
        except ValueError as exc:
            done(failed(str(exc)))
            return
        loop = asyncio.get_running_loop()
        resolve_then(
            host, self._egress, lambda address: _PendingGet(loop, done, request, timeout_s).start(address, port, self._source), done
        )


class _PendingGet:
    """One check: connect (writer callback) -> send the GET -> read the status line (reader callback);
    a timer bounds the whole. Every exit closes the socket and reports the result exactly once."""

    __slots__ = ("_buffer", "_done", "_finished", "_loop", "_request", "_sock", "_start", "_timeout_s", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, done: Done, request: bytes, timeout_s: float) -> None:
        self._loop, self._done, self._finished = loop, done, False
        self._request, self._timeout_s = request, timeout_s
        self._buffer = b""
        self._sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._start = time.perf_counter()

    def start(self, address: str, port: int, source: str | None) -> None:
        try:
            sock = self._sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                                              socket.SOCK_STREAM)
        except OSError as exc:  # e.g. out of file descriptors: this check fails, the batch goes on
            self._finish(failed(exc.strerror or type(exc).__name__))
            return
        sock.setblocking(False)
        try:
            prepare_probe_socket(sock)
            if source:
                sock.bind((source, 0))
            err = sock.connect_ex((address, port))
        except OSError as exc:
            err = exc.errno or -1
        if err == 0:
            self._connected()
        elif err == errno.EINPROGRESS:
            self._timer = self._loop.call_later(self._timeout_s, self._timed_out)
            self._loop.add_writer(sock.fileno(), self._writable)
        else:
            self._finish(failed(os.strerror(err)))

    def _writable(self) -> None:
        assert self._sock is not None
        self._loop.remove_writer(self._sock.fileno())
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._finish(failed(os.strerror(err)))
        else:
            self._connected()

    def _connected(self) -> None:
        assert self._sock is not None
        try:
            sent = self._sock.send(self._request)  # a few hundred bytes: fits a fresh socket's buffer
        except OSError as exc:
            self._finish(failed(exc.strerror or type(exc).__name__))
            return
        if sent != len(self._request):
            self._finish(failed("could not send the request"))
            return
        if self._timer is None:
            self._timer = self._loop.call_later(self._timeout_s, self._timed_out)
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish(failed(exc.strerror or type(exc).__name__))
            return
        if not data:
            self._finish(failed(failures.CLOSED))
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 1024:
                self._finish(failed(failures.NOT_HTTP))
            return
        status = _status_of(self._buffer[:end])
        if status is None:
            self._finish(failed(failures.NOT_HTTP))
            return
        latency = elapsed_ms(self._start)
        self._finish(ProbeResult(False, latency, failures.http_status(status)) if status >= 400
                     else ProbeResult(True, latency))

    def _timed_out(self) -> None:
        self._finish(failed(f"timeout after {self._timeout_s:g}s"))

    def _finish(self, result: ProbeResult) -> None:
        if self._finished:
            return
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
        if self._sock is not None:
            fd = self._sock.fileno()
            if fd >= 0:
                self._loop.remove_writer(fd)
                self._loop.remove_reader(fd)
            self._sock.close()
        self._done(result)
