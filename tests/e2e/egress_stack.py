"""Processes and loopback servers for the egress tests: `iot` services with or without an allow-list,
optionally under a hosts-file stub, a listener that counts who connects, and servers that send banners."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from iot_processes import ADMIN_TOKEN, Procs, create_tenant, iot_env, run_iot
from servers import free_port


class Stack(Procs):
    """`iot` processes of one test against its own database; `service()` waits for /health."""

    def __init__(self, database_url: str, redis_url: str, log_dir: Path) -> None:
        super().__init__(log_dir, {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "APP_HOST": "127.0.0.1",
                                   "LOG_LEVEL": "info", "MONITOR_NAMES": "plain,keepalive",
                                   "ADMIN_TOKEN": ADMIN_TOKEN})
        self.database_url, self.redis_url = database_url, redis_url

    def migrate(self) -> None:
        run_iot(["migrate"], iot_env(**self.common))


@contextlib.contextmanager
def stack_for_test(postgres_server, redis_server, tmp_path: Path, request, prefix: str) -> Iterator[Stack]:
    """A migrated Stack on a database of its own and an emptied Redis (streams and locks of an earlier test
    must not leak in); its logs are printed when the test failed."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    database_url = postgres_server.create_database(f"{prefix}_{tmp_path.name[:40]}".replace("-", "_"))
    running = Stack(database_url, redis_server.url, tmp_path)
    try:
        running.migrate()
        yield running
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(running.logs())
    finally:
        running.stop()


def tenant_client(tracker_url: str, slug: str) -> httpx.Client:
    """A new tenant's API client."""
    api_key = create_tenant(tracker_url, slug)
    return httpx.Client(base_url=tracker_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


@dataclass
class LoopbackServer:
    """A TCP server on 127.0.0.1 and [::1] (same port) running `answer(sock)` per connection."""

    answer: Callable[[socket.socket], None]
    port: int = 0
    connections: int = 0
    _servers: list[socketserver.BaseServer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LoopbackServer:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with owner._lock:
                    owner.connections += 1
                with contextlib.suppress(OSError):
                    owner.answer(self.request)

        for _attempt in range(20):
            port = free_port()
            servers: list[socketserver.BaseServer] = []
            try:
                servers.append(_Server(("127.0.0.1", port), Handler))
                servers.append(_Server6(("::1", port), Handler))
            except OSError:
                for server in servers:
                    server.server_close()
                continue
            self.port, self._servers = port, servers
            for server in servers:
                threading.Thread(target=server.serve_forever, daemon=True).start()
            return self
        raise RuntimeError("no port free on both 127.0.0.1 and ::1")

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def answer_http_ok(sock: socket.socket) -> None:
    sock.recv(4096)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def answer_banner(banner: bytes) -> Callable[[socket.socket], None]:
    """Talk first, like SSH or Redis: send `banner`, then read until the client gives up."""

    def answer(sock: socket.socket) -> None:
        sock.sendall(banner)
        sock.settimeout(10)
        while sock.recv(65536):
            pass

    return answer


def answer_status_line(line: bytes) -> Callable[[socket.socket], None]:
    """An HTTP server whose status line carries text of its own (the reason phrase)."""

    def answer(sock: socket.socket) -> None:
        sock.recv(65536)
        sock.sendall(line + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    return answer
