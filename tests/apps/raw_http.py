"""Raw HTTP/1.1 over a socket, for what httpx will not do: huge or chunked bodies sent while the server may
answer early, bodies that stall half-way, and the memory of the server process while it happens."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the first byte sent to the end of the response
    body_bytes_sent: int = 0
    send_error: str | None = field(default=None)


def send(url: str, method: str, path: str, headers: dict[str, str], chunks: Iterable[bytes], *,
         chunked: bool = False, stall_after: int | None = None, timeout: float = 60.0) -> RawResponse:
    """Send a request whose body comes from `chunks` while reading the answer.

    `chunked` uses Transfer-Encoding: chunked (no Content-Length); otherwise pass Content-Length in
    `headers`. `stall_after`: stop sending after this many body bytes but keep the connection open (a slow
    client). The sender stops quietly when the server closes the connection early.
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    head = [f"{method} {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}", "Connection: close"]
    if chunked:
        head.append("Transfer-Encoding: chunked")
    head += [f"{k}: {v}" for k, v in headers.items()]
    started = time.monotonic()
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sent = {"bytes": 0, "error": None}

    def pump() -> None:
        try:
            for chunk in chunks:
                if stall_after is not None and sent["bytes"] + len(chunk) > stall_after:
                    chunk = chunk[: stall_after - sent["bytes"]]
                if chunk:
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
                    sent["bytes"] += len(chunk)
                if stall_after is not None and sent["bytes"] >= stall_after:
                    return
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError as exc:  # the server answered and closed: expected for refused bodies
            sent["error"] = type(exc).__name__

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    data = b""
    try:
        while True:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            data += piece
            if _complete(data):
                break
    finally:
        seconds = time.monotonic() - started
        sock.close()
        sender.join(timeout=10)
    head_raw, _, body = data.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise ConnectionError(f"no HTTP response (sent {sent['bytes']} body bytes, {sent['error']})")
    status = int(lines[0].split()[1])
    response_headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return RawResponse(status, response_headers, body, seconds, sent["bytes"], sent["error"])


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def repeated(piece: bytes, total: int, chunk_size: int = 1 << 20) -> Iterable[bytes]:
    """`total` bytes of `piece` repeated, in chunks of whole pieces (never the whole body in memory at once)."""
    block = piece * max(1, chunk_size // len(piece))
    left = total
    while left > 0:
        yield block[:left]
        left -= len(block)


class ProcessMemory:
    """Resident memory of a process from /proc: now, and its peak since `reset_peak()` (needs root)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _status(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
        raise KeyError(key)

    def rss_mib(self) -> float:
        return self._status("VmRSS")

    def peak_mib(self) -> float:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
