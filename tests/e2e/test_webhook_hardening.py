"""Issue 12, cases 1 and 7 end to end: a webhook receiver cannot hurt the worker, and webhooks cannot be
replayed. Real `iot worker` processes (one under the production memory limit), real receivers on loopback.

- A receiver answering 200 with a 1 GiB body: the worker (256 MiB cgroup) survives and the row shows
  the attempt.
- A worker killed in the middle of a request has already counted the attempt, and its successor waits for
  the backoff instead of hammering (or dying on) the same receiver at once.
- Every attempt is signed afresh (`t=<unix>,v1=<HMAC of "<t>.<body>">`) with the event id; the README's
  verification snippet accepts it and refuses a replay older than its tolerance; during a secret rotation
  both secrets verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from egress_stack import LoopbackServer, Stack, stack_for_test, tenant_client
from iot_processes import wait_until
from webhook_signature import verify_webhook

pytestmark = pytest.mark.e2e

MEMORY_LIMIT = 256 * 1024 * 1024  # the worker's Nomad memory limit
GIB = 1024 * 1024 * 1024


@pytest.fixture
def stack(postgres_server, redis_server, tmp_path: Path, request) -> Iterator[Stack]:
    with stack_for_test(postgres_server, redis_server, tmp_path, request, "hooks") as running:
        yield running


@dataclass
class Request:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records each webhook request, then lets `respond(sock)` answer it (or not)."""

    respond: Callable[[socket.socket], None]
    requests: list[Request] = field(default_factory=list)
    sent_bytes: int = 0
    closed_by_client: threading.Event = field(default_factory=threading.Event)

    def __call__(self, sock: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        while len(body) < int(headers.get("content-length", "0")):
            body += sock.recv(65536)
        self.requests.append(Request(time.time(), headers, body))
        self.respond(sock)


def endless_ok_body(receiver_state: dict) -> Callable[[socket.socket], None]:
    def respond(sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % GIB)
        chunk = b"\0" * (1024 * 1024)
        try:
            while receiver_state["sent"] < GIB:
                sock.sendall(chunk)
                receiver_state["sent"] += len(chunk)
        except OSError:
            receiver_state["client_closed"] = True

    return respond


def hang_until_closed(sock: socket.socket) -> None:
    sock.settimeout(120)
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


def status(code_of: Callable[[], int]) -> Callable[[socket.socket], None]:
    def respond(sock: socket.socket) -> None:
        code = code_of()
        sock.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % code)

    return respond


async def _sql(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def sql(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(_sql(database_url, query, *args))


def enqueue(database_url: str, tenant_id: int, event_id: str) -> None:
    payload = json.dumps({"event_id": event_id, "type": "device.state_changed", "state": "down"})
    sql(database_url, "INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload) "
        "VALUES ($1, $2, 'device.state_changed', $3::jsonb)", tenant_id, event_id, payload)


def delivery(database_url: str, event_id: str) -> asyncpg.Record:
    (row,) = sql(database_url, "SELECT status, attempts, last_status_code, last_error, "
                 "extract(epoch FROM next_attempt_at - now()) AS due_in_s FROM webhook_deliveries "
                 "WHERE event_id = $1", event_id)
    return row


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[tuple[list[str], Callable[[], int]]]:
    """A memory cgroup of `limit` bytes (v1 hierarchy, or v2): (command prefix that joins it, peak usage)."""
    name = f"issue12b-worker-{os.getpid()}"
    v1 = Path("/sys/fs/cgroup/memory")
    if (v1 / "memory.limit_in_bytes").exists():
        path = v1 / name
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(limit))
        with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
            (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
        peak = path / "memory.max_usage_in_bytes"
    else:
        path = Path("/sys/fs/cgroup") / name
        path.mkdir()
        (path / "memory.max").write_text(str(limit))
        (path / "memory.swap.max").write_text("0")
        peak = path / "memory.peak"
    try:
        yield ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(path)], lambda: int(peak.read_text())
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            try:
                path.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _tenant(database_url: str, slug: str, url: str, secret: str = "whsec-0123456789abcdef") -> int:
    (row,) = sql(database_url, "INSERT INTO tenants (slug, api_key_hash, webhook_url, webhook_secret) "
                 "VALUES ($1, $2, $3, $4) RETURNING id", slug, f"hash-{slug}", url, secret)
    return row["id"]


def test_a_1_gib_answer_does_not_kill_a_worker_under_its_memory_limit(stack: Stack) -> None:
    state = {"sent": 0, "client_closed": False}
    receiver = Receiver(endless_ok_body(state))
    server = LoopbackServer(receiver).start()
    try:
        tenant = _tenant(stack.database_url, "bighook", f"http://127.0.0.1:{server.port}/hook")
        enqueue(stack.database_url, tenant, "big-1")
        with memory_cgroup(MEMORY_LIMIT) as (join, peak):
            worker = stack.spawn("worker", ["worker"], join, APP_PORT=0, WEBHOOK_TIMEOUT_SECONDS=30)
            wait_until(lambda: receiver.requests, 30, "the webhook request", [worker])
            # the worker has the answer's head; whatever it does with the body, it must survive it
            wait_until(lambda: delivery(stack.database_url, "big-1")["status"] != "pending"
                       or worker.proc.poll() is not None, 60, "the attempt to finish", interval=0.5)
            time.sleep(1)
            alive = worker.proc.poll() is None
            row = delivery(stack.database_url, "big-1")
            print(f"worker alive: {alive}, peak memory {peak() / 2**20:.0f} MiB of {MEMORY_LIMIT / 2**20:.0f}, "
                  f"receiver sent {state['sent'] / 2**20:.0f} MiB, row {dict(row)}")
            assert alive, f"the worker died (exit {worker.proc.returncode}):\n{worker.tail()}"
            assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 1, 200)
            assert state["sent"] < 64 * 1024 * 1024, "the worker read the body it does not need"
    finally:
        server.stop()


def test_a_worker_killed_mid_request_has_counted_the_attempt(stack: Stack) -> None:
    receiver = Receiver(hang_until_closed)
    server = LoopbackServer(receiver).start()
    try:
        tenant = _tenant(stack.database_url, "hang", f"http://127.0.0.1:{server.port}/hook")
        enqueue(stack.database_url, tenant, "hang-1")
        worker = stack.spawn("worker", ["worker"], APP_PORT=0, WEBHOOK_TIMEOUT_SECONDS=60,
                             WEBHOOK_BACKOFF_SECONDS=30)
        wait_until(lambda: receiver.requests, 30, "the webhook request", [worker])
        worker.proc.kill()
        worker.proc.wait(10)
        row = delivery(stack.database_url, "hang-1")
        assert (row["status"], row["attempts"]) == ("pending", 1), dict(row)
        assert row["due_in_s"] > 20, "the interrupted attempt must back off like a failed one"
        assert row["last_error"], "the row says the attempt got no answer"

        successor = stack.spawn("worker-2", ["worker"], APP_PORT=0, WEBHOOK_TIMEOUT_SECONDS=60,
                                WEBHOOK_BACKOFF_SECONDS=30)
        time.sleep(5)
        assert successor.proc.poll() is None
        assert len(receiver.requests) == 1, "the successor retried at once instead of after the backoff"
    finally:
        server.stop()


SIGNATURE = re.compile(r"^t=(\d+)(,v1=[0-9a-f]{64})+$")


def test_webhooks_are_signed_afresh_per_attempt_and_secrets_rotate(stack: Stack) -> None:
    codes = iter([503])
    receiver = Receiver(status(lambda: next(codes, 200)))
    server = LoopbackServer(receiver).start()
    try:
        tracker = stack.service("tracker", ["tracker"])
        stack.spawn("worker", ["worker"], APP_PORT=0, WEBHOOK_BACKOFF_SECONDS=1.5)
        with tenant_client(tracker, "signed") as tenant:
            tenant_id = tenant.get("/v1/tenant").json()["id"]
            first, second, third = "whsec-first-0123456789", "whsec-second-0123456789", "whsec-third-0123456789"
            url = f"http://127.0.0.1:{server.port}/hook"
            assert tenant.put("/v1/webhook", json={"url": url, "secret": first}).status_code == 200

            enqueue(stack.database_url, tenant_id, "evt-1")
            wait_until(lambda: len(receiver.requests) == 2, 30, "a failed attempt and its retry", stack.procs)
            attempts = receiver.requests
            for request in attempts:
                header = request.headers["x-iot-signature"]
                assert SIGNATURE.match(header) and header.count("v1=") == 1, header
                assert request.headers["x-iot-event-id"] == "evt-1"
                assert verify_webhook(request.body, header, first, now=request.at)
                assert not verify_webhook(request.body, header, second, now=request.at)
                stamp = int(header.split(",")[0][2:])
                assert abs(request.at - stamp) < 5
            assert attempts[0].body == attempts[1].body
            assert attempts[0].headers["x-iot-signature"] != attempts[1].headers["x-iot-signature"]
            # a replay of a captured request fails once the tolerance window has passed
            captured = attempts[0]
            assert verify_webhook(captured.body, captured.headers["x-iot-signature"], first, now=captured.at + 60)
            assert not verify_webhook(captured.body, captured.headers["x-iot-signature"], first,
                                      now=captured.at + 301)

            # rotation: the previous secret keeps verifying while it is still valid ...
            rotated = tenant.put("/v1/webhook", json={"url": url, "secret": second})
            assert rotated.status_code == 200 and rotated.json()["previous_secret_expires_at"]
            enqueue(stack.database_url, tenant_id, "evt-2")
            wait_until(lambda: len(receiver.requests) == 3, 30, "the event after the rotation", stack.procs)
            request = receiver.requests[2]
            header = request.headers["x-iot-signature"]
            assert SIGNATURE.match(header) and header.count("v1=") == 2, header
            assert verify_webhook(request.body, header, second, now=request.at)
            assert verify_webhook(request.body, header, first, now=request.at)

            # ... and not after the tenant ended the overlap
            ended = tenant.put("/v1/webhook", json={"url": url, "secret": third, "previous_secret_valid_s": 0})
            assert ended.status_code == 200 and ended.json()["previous_secret_expires_at"] is None
            enqueue(stack.database_url, tenant_id, "evt-3")
            wait_until(lambda: len(receiver.requests) == 4, 30, "the event after the second rotation", stack.procs)
            request = receiver.requests[3]
            header = request.headers["x-iot-signature"]
            assert header.count("v1=") == 1
            assert verify_webhook(request.body, header, third, now=request.at)
            assert not verify_webhook(request.body, header, second, now=request.at)
    finally:
        server.stop()
