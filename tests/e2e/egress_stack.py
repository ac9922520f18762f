"""Processes and loopback servers for the egress tests: `iot` services with or without an allow-list,
optionally under a hosts-file stub, a listener that counts who connects, and servers that send banners."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from e2e_processes import ADMIN_TOKEN, Proc, iot_env, run_iot, wait_http_ok
from servers import free_port


@dataclass
class Stack:
    """`iot` processes of one test against its own database; `service()` waits for /health."""

    database_url: str
    redis_url: str
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def common(self) -> dict[str, object]:
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, "APP_HOST": "127.0.0.1",
                "LOG_LEVEL": "info", "MONITOR_NAMES": "plain,keepalive", "ADMIN_TOKEN": ADMIN_TOKEN}

    def migrate(self) -> None:
        run_iot(["migrate"], iot_env(**self.common()))

    def spawn(self, name: str, args: list[str], prefix: list[str] | None = None, **env: object) -> Proc:
        proc = Proc(name, args, iot_env(**self.common(), **env), self.log_dir / f"{name}.log", list(prefix or []))
        self.procs.append(proc.start())
        return proc

    def service(self, name: str, args: list[str], prefix: list[str] | None = None, **env: object) -> str:
        """Start an HTTP service on a free port (picking again if another process took it); its URL."""
        for _attempt in range(3):
            port = free_port()
            proc = self.spawn(name, args, prefix, APP_PORT=port, **env)
            try:
                wait_http_ok(f"http://127.0.0.1:{port}/health", proc, timeout=60)
                return f"http://127.0.0.1:{port}"
            except AssertionError:
                if "in use" not in proc.tail(5).lower():
                    raise
                self.procs.remove(proc)
                proc.stop()
        raise AssertionError(f"{name} found no free port")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n\n".join(f"== {p.name} (exit {p.proc.poll()}) ==\n{p.tail(20)}" for p in self.procs)


def tenant_client(tracker_url: str, slug: str) -> httpx.Client:
    """A new tenant's API client."""
    response = httpx.post(f"{tracker_url}/v1/tenants", json={"slug": slug},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    assert response.status_code == 201, response.text
    return httpx.Client(base_url=tracker_url, headers={"Authorization": f"Bearer {response.json()['api_key']}"},
                        timeout=60)


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
