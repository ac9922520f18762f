"""The device listeners: one asyncio server per device port, all in one event loop.

HTTP devices speak just enough HTTP/1.1 (keep-alive, Content-Length bodies) to answer probes.
TCP devices accept and send a one-line banner. Their failure modes work at the socket level so a
connect-only probe sees them: `fail` closes the listener (connection refused), `hang` and refused
sources drop the SYN with a classic BPF filter on the listening socket (the connect times out).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import socket
import struct

from iot.simulator.fleet import SimDevice

MAX_REQUEST_HEAD = 16 * 1024
TCP_IDLE_CLOSE_S = 30.0

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)
# cBPF: load word from the network header (IPv4 source address at offset 12), compare, return.
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
SKF_NET_OFF = -0x100000


def _response(status: str, body: bytes, keep_alive: bool) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    return head.encode() + body


class HttpDeviceProtocol(asyncio.Protocol):
    def __init__(self, device: SimDevice) -> None:
        self.device = device
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.hung = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")[0]

    def data_received(self, data: bytes) -> None:
        if self.hung:
            return
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_REQUEST_HEAD:
                    self._send(_response("431 Request Header Fields Too Large", b"", False), close=True)
                return
            head = self.buffer[:end].decode("latin-1")
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return  # body not complete yet
            self.buffer = self.buffer[end + 4 + length:]
            self._handle(head)
            if self.hung or self.transport is None or self.transport.is_closing():
                return

    def _handle(self, head: str) -> None:
        device = self.device
        device.record_hit(self.peer)
        request_line, _, headers = head.partition("\r\n")
        keep_alive = request_line.endswith("HTTP/1.1") and "connection: close" not in headers.lower()
        if self.peer in device.refuse_sources:
            self._send(_response("503 Service Unavailable", b"refused", False), close=True)
            return
        if device.mode == "hang":
            self.hung = True  # never answer; the prober times out and closes
            return
        status, body = ("500 Internal Server Error", b"fail") if device.mode == "fail" else ("200 OK", b"ok")
        payload = _response(status, body, keep_alive)
        if device.delay_ms > 0:
            asyncio.get_running_loop().call_later(device.delay_ms / 1000.0, self._send, payload, not keep_alive)
        else:
            self._send(payload, not keep_alive)

    def _send(self, payload: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(payload)
        if close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            with contextlib.suppress(ValueError):
                return max(0, int(value.strip()))
    return 0


class TcpDeviceProtocol(asyncio.Protocol):
    def __init__(self, device: SimDevice) -> None:
        self.device = device
        self.transport: asyncio.Transport | None = None
        self.timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.device.record_hit(transport.get_extra_info("peername")[0])
        loop = asyncio.get_running_loop()
        self.timers.append(loop.call_later(self.device.delay_ms / 1000.0, self._greet))
        self.timers.append(loop.call_later(TCP_IDLE_CLOSE_S, transport.close))

    def _greet(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"ok\r\n")

    def data_received(self, data: bytes) -> None:
        pass  # the device ignores input

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()
        self.transport = None


def ipv4_source_filter(refused: frozenset[str], drop_all: bool) -> bytes:
    """A cBPF program dropping packets from `refused` IPv4 sources (or every packet)."""
    if drop_all:
        return struct.pack("HBBI", BPF_RET_K, 0, 0, 0)
    addresses = sorted(refused)
    n = len(addresses)
    program = [struct.pack("HBBI", BPF_LD_W_ABS, 0, 0, (SKF_NET_OFF + 12) & 0xFFFFFFFF)]
    for i, address in enumerate(addresses, start=1):
        packed = struct.unpack("!I", socket.inet_aton(address))[0]
        program.append(struct.pack("HBBI", BPF_JEQ_K, n - i + 1, 0, packed))  # match -> the drop at the end
    program.append(struct.pack("HBBI", BPF_RET_K, 0, 0, 0xFFFFFFFF))
    program.append(struct.pack("HBBI", BPF_RET_K, 0, 0, 0))
    return b"".join(program)


def _attach_filter(sock: socket.socket, program: bytes | None) -> None:
    if program is None:
        with contextlib.suppress(OSError):  # ENOENT when no filter is attached
            sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        return
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


class DeviceListener:
    """The listening socket of one device, kept in line with the device's mode."""

    def __init__(self, device: SimDevice) -> None:
        self.device = device
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        await self.apply()

    async def apply(self) -> None:
        """(Re)configure the listener after a behaviour change."""
        device = self.device
        if device.kind == "tcp" and device.mode == "fail":
            await self.close()  # connection refused
            return
        if self.server is None:
            loop = asyncio.get_running_loop()
            factory = (lambda: HttpDeviceProtocol(device)) if device.kind == "http" else (lambda: TcpDeviceProtocol(device))
            self.server = await loop.create_server(factory, device.host, device.port, reuse_address=True, backlog=1024)
        if device.kind == "tcp":
            program = None
            if device.mode == "hang" or device.refuse_sources:
                program = ipv4_source_filter(device.refuse_sources, drop_all=device.mode == "hang")
            for sock in self.server.sockets:
                _attach_filter(sock, program)  # type: ignore[arg-type]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
