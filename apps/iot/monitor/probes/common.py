"""What every probe shares: the result type, socket options for probe connections, address parsing.

Every probe returns a `ProbeResult` and never raises: a timeout, refusal or bad target is a failed check
with an error text, because the evaluator must see failures, not a crashed batch. Error texts are fixed
(`iot.failures`): nothing a target sends ever reaches a tenant. Targets are resolved and judged by the
egress policy at connect time (`resolve`), and probes connect to the address that was judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from iot.egress import EgressPolicy
from iot.failures import describe

# Linger 0: close with RST, so a monitor doing thousands of connects per second does not pile up
# TIME_WAIT sockets and run out of local ports.
_LINGER_RST = struct.pack("ii", 1, 0)
# Bind to the source address without picking a port yet: the kernel then chooses the port at connect()
# by the full 4-tuple. Without it, bind() must find a port unused by ANY socket on that address, which
# gets slow (and runs out) at thousands of connections per second.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class ProbeSetupError(RuntimeError):
    """The host does not allow a probe kind (e.g. ICMP sockets); the message says how to fix it."""


class ProbeResult(NamedTuple):
    """Immutable; a tuple because one is made per check (a frozen dataclass costs twice as much)."""

    ok: bool
    latency_ms: float | None
    error: str | None = None


def prepare_probe_socket(sock: socket.socket) -> None:
    """Options every probe connection gets: RST on close, late port choice when bound to a source."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    if sock.family == socket.AF_INET:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)


# A check's completion callback: called exactly once with its result, possibly before `begin` returns.
Done = Callable[[ProbeResult], None]

# Resolutions in flight (host names only): referenced here so the tasks are not garbage-collected.
_resolving: set[asyncio.Task[None]] = set()


def failed(error: str) -> ProbeResult:
    return ProbeResult(False, None, error)


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def is_ip_literal(host: str) -> bool:
    """True for an IPv4/IPv6 address literal (inet_pton: strict forms only, and ~20x cheaper than ipaddress)."""
    try:
        socket.inet_pton(socket.AF_INET, host)
        return True
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return True
    except OSError:
        return False


async def resolve(host: str, egress: EgressPolicy) -> str:
    """The address to connect to for `host`, allowed by the egress policy (names resolved now, without
    blocking). Raises EgressRefused (an OSError) when the policy forbids it, OSError when it does not resolve."""
    return await egress.resolve(host)


def failed_because(exc: BaseException) -> ProbeResult:
    """A failed check for an exception: the tenant's own target text for a malformed target (ValueError),
    a fixed text for anything that happened on the network."""
    return failed(str(exc) if isinstance(exc, ValueError) else describe(exc))


@functools.lru_cache(maxsize=65536)
def split_host_port(target: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); ValueError naming the target otherwise."""
    parts = urlsplit(f"//{target}")
    if not parts.hostname or parts.port is None:
        raise ValueError(f"tcp target {target!r} must be host:port")
    return parts.hostname, parts.port


def resolve_then(host: str, egress: EgressPolicy, start: Callable[[str], None], done: Done) -> None:
    """Call `start(address)` for `host` with the address the egress policy allows: at once for an IP
    literal, after a non-blocking lookup otherwise.

    A refused or failed lookup completes the check with a fixed error instead. No task is made for IP
    literals, which is what devices use nearly always; the per-check probe code stays a plain callback chain.
    """
    if is_ip_literal(host):
        try:
            address = egress.connect_address(host)  # cached per literal: judged once, not per check
        except OSError as exc:
            done(failed(describe(exc)))
            return
        start(address)
        return

    async def lookup() -> None:
        try:
            address = await resolve(host, egress)
        except OSError as exc:
            done(failed(describe(exc)))
            return
        start(address)

    _spawn(lookup())


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _resolving.add(task)
    task.add_done_callback(_resolving.discard)


class TaskProbe:
    """A probe whose check is one coroutine (`_check`, DNS and TLS): `begin` runs it as a task, keeps a
    reference until it ends, and turns any exception into a failed check (a probe never raises)."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def begin(self, target: str, timeout_s: float, done: Done, options: dict[str, Any] | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._run(target, timeout_s, options or {}, done))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def check(self, target: str, timeout_s: float, options: dict[str, Any] | None = None) -> ProbeResult:
        future: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
        self.begin(target, timeout_s, lambda result: future.done() or future.set_result(result), options)
        return await future

    async def _run(self, target: str, timeout_s: float, options: dict[str, Any], done: Done) -> None:
        try:
            result = await self._check(target, timeout_s, options)
        except asyncio.CancelledError:
            done(failed("probe cancelled"))
            raise
        except Exception as exc:  # noqa: BLE001 - a probe never raises: the batch must go on
            result = failed(describe(exc))
        done(result)

    async def _check(self, target: str, timeout_s: float, options: dict[str, Any]) -> ProbeResult:
        raise NotImplementedError
