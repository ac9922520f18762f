"""`iot monitor` as a real process: heartbeat, /health, /metrics, and SIGTERM mid-batch loses nothing."""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis
from iot_processes import IOT, Proc, iot_env
from servers import free_port

from iot import protocol

REGION = "helsinki"


class SlowHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        time.sleep(1.5)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # Probes close (RST) right after the status line; the unsent body is expected to fail.
        pass


@pytest.fixture
def slow_server():
    server = QuietServer(("127.0.0.1", 0), SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _wait(condition, timeout: float, what: str, proc: Proc) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.proc.poll() is None, f"monitor exited early while waiting for {what}:\n{proc.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_mid_batch_finishes_writes_and_acks_it(redis_url: str, slow_server: str, tmp_path: Path):
    client = redis.Redis.from_url(redis_url)
    port = free_port()
    env = iot_env(REDIS_URL=redis_url, REGION=REGION, APP_PORT=port, APP_HOST="127.0.0.1",
                  MONITOR_SOURCE_ADDRESS="127.0.0.5", HEARTBEAT_SECONDS=0.5, INSTANCE_ID="m-test")
    proc = Proc("monitor", ["monitor"], env, tmp_path / "monitor.log").start()
    try:
        _wait(lambda: client.zscore(protocol.MONITOR_HEARTBEATS_KEY, f"{REGION}/m-test") is not None, 20,
              "heartbeat", proc)
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["region"] == REGION and health["instance"] == "m-test" and health["version"]

        batch = [[i, "http", f"{slow_server}/d{i}", 5000] for i in range(20)]
        client.xadd(protocol.checks_stream(REGION), {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: "0"})
        _wait(lambda: client.xpending(protocol.checks_stream(REGION), protocol.CHECKS_GROUP)["pending"] == 1, 10,
              "the batch to be taken", proc)
        proc.proc.send_signal(signal.SIGTERM)  # the probes need 1.5 s more
        assert proc.proc.wait(20) == 0
    finally:
        proc.stop()
    results = [row for _id, fields in client.xrange(protocol.RESULTS_STREAM) for row in json.loads(fields[b"results"])]
    assert sorted(r[0] for r in results) == list(range(20)) and all(r[1] == 1 for r in results)
    assert client.xpending(protocol.checks_stream(REGION), protocol.CHECKS_GROUP)["pending"] == 0
    assert client.zscore(protocol.MONITOR_HEARTBEATS_KEY, f"{REGION}/m-test") is None  # left the live set
    client.close()


def test_metrics_endpoint_serves_prometheus_text(redis_url: str, tmp_path: Path):
    port = free_port()
    env = iot_env(REDIS_URL=redis_url, REGION=REGION, APP_PORT=port, APP_HOST="127.0.0.1")
    proc = Proc("monitor", ["monitor"], env, tmp_path / "monitor.log").start()
    try:
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/metrics"), 20, "/metrics", proc)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "iot_monitor_batches_total" in text and "iot_monitor_last_batch_age_seconds" in text
    finally:
        assert proc.stop(20) == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(("command", "env", "names"), [
    ("monitor", {"REGION": "Frank/furt", "CONCURRENCY": "0"}, ["REGION", "CONCURRENCY"]),
    ("monitor", {"CANARIES": "not a target"}, ["CANARIES"]),
    ("monitor", {"MONITOR_SOURCE_ADDRESS": "192.0.2.77"}, ["MONITOR_SOURCE_ADDRESS"]),
    ("monitor", {"EGRESS_ALLOW_CIDRS": "10.0.0.0/33"}, ["EGRESS_ALLOW_CIDRS"]),
    ("monitor", {"CANARIES": "http://169.254.169.254/latest, 1.1.1.1", "EGRESS_ALLOW_CIDRS": ""}, ["CANARIES"]),
    ("worker", {"BATCH_SIZE": "0", "QUORUM_MIN": "zero"}, ["BATCH_SIZE", "QUORUM_MIN"]),
    ("monitor", {"QUEUE_CHECKS": "20000", "QUEUE_CHECKS_MAX": "10000"}, ["QUEUE_CHECKS_MAX", "raise QUEUE_CHECKS_MAX"]),
])
def test_bad_configuration_is_refused_with_the_variable_named(command: str, env: dict, names: list[str], redis_url):
    full_env = iot_env(REDIS_URL=redis_url, APP_PORT=free_port(), **env)
    done = subprocess.run([IOT, command], env=full_env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    for name in names:
        assert name in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_batch_of_a_monitor_killed_mid_batch_is_reclaimed_by_its_peer(redis_url: str, slow_server: str,
                                                                       tmp_path: Path):
    client = redis.Redis.from_url(redis_url)
    stream = protocol.checks_stream(REGION)
    procs: dict[str, Proc] = {}

    def start(name: str) -> None:
        env = iot_env(REDIS_URL=redis_url, REGION=REGION, APP_PORT=free_port(), APP_HOST="127.0.0.1",
                      INSTANCE_ID=name, HEARTBEAT_SECONDS=0.5, RECLAIM_IDLE_SECONDS=1, BATCH_READ_COUNT=1)
        procs[name] = Proc(name, ["monitor"], env, tmp_path / f"{name}.log").start()
        _wait(lambda: client.zscore(protocol.MONITOR_HEARTBEATS_KEY, f"{REGION}/{name}") is not None, 20,
              f"{name} heartbeat", procs[name])

    try:
        start("victim")
        batch = [[i, "http", f"{slow_server}/d{i}", 5000] for i in range(30)]
        client.xadd(stream, {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: "0"})
        _wait(lambda: client.xpending(stream, protocol.CHECKS_GROUP)["pending"] == 1, 10, "victim takes the batch",
              procs["victim"])
        procs["victim"].proc.kill()  # kill -9 in the middle of the batch (probes take 1.5 s)
        procs["victim"].proc.wait(5)
        assert client.xlen(protocol.RESULTS_STREAM) == 0
        start("peer")
        _wait(lambda: client.xpending(stream, protocol.CHECKS_GROUP)["pending"] == 0, 20, "peer reclaims",
              procs["peer"])
    finally:
        for proc in procs.values():
            proc.stop(20)
    results = [row for _id, fields in client.xrange(protocol.RESULTS_STREAM) for row in json.loads(fields[b"results"])]
    assert sorted(r[0] for r in results) == list(range(30))  # every check of the batch has a result
    assert {f[b"instance"] for _id, f in client.xrange(protocol.RESULTS_STREAM)} == {b"peer"}
    client.close()


def test_the_monitor_lifts_its_open_files_limit_so_no_check_fails_for_want_of_a_socket(redis_url: str, tmp_path: Path):
    """Each HTTP/TCP check in flight holds a socket. Many hosts and container runtimes start a process with a
    soft limit of 1,024 open files (and a higher hard one): with CONCURRENCY=1500 the checks beyond it failed
    at once with "Too many open files", a false failure of a device that was never probed. The monitor now
    lifts its soft limit to what CONCURRENCY needs: every hanging check ends at its timeout."""
    client = redis.Redis.from_url(redis_url)
    hanging = socket.socket()  # accepts (kernel backlog; beyond it SYNs wait), never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(4096)
    target = f"http://127.0.0.1:{hanging.getsockname()[1]}/"
    env = iot_env(REDIS_URL=redis_url, REGION=REGION, APP_PORT=free_port(), APP_HOST="127.0.0.1", INSTANCE_ID="fds",
                  CONCURRENCY=1500, TENANT_SHARE=1)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard >= 1600, f"this test needs a hard open files limit of 1,600 or more, not {hard}"
    proc = Proc("fds", ["monitor"], env, tmp_path / "fds.log", ["prlimit", f"--nofile=1024:{hard}", "--"]).start()
    try:
        _wait(lambda: client.zscore(protocol.MONITOR_HEARTBEATS_KEY, f"{REGION}/fds") is not None, 20, "heartbeat", proc)
        limits = Path(f"/proc/{proc.proc.pid}/limits").read_text()
        soft = int(next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3])
        assert soft >= 1500, limits
        for b in range(3):
            batch = [[b * 500 + i, "http", target, 4000, 1, 300] for i in range(500)]
            client.xadd(protocol.checks_stream(REGION),
                        {protocol.CHECKS_FIELD: json.dumps(batch), protocol.SENT_FIELD: str(time.time())})
        _wait(lambda: client.xlen(protocol.RESULTS_STREAM) > 0 and len(_rows(client)) == 1500, 30, "1500 results", proc)
    finally:
        proc.stop(20)
        hanging.close()
    errors = {row[3] for row in _rows(client)}
    assert errors == {"timeout after 4s"}, sorted(errors)[:5]
    client.close()


def test_a_monitor_whose_hard_open_files_limit_is_below_concurrency_refuses_to_start(redis_url: str):
    env = iot_env(REDIS_URL=redis_url, APP_PORT=free_port(), CONCURRENCY=1500)
    done = subprocess.run(["prlimit", "--nofile=1024:1024", "--", IOT, "monitor"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0
    assert "CONCURRENCY" in done.stderr and "1024" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def _rows(client: redis.Redis) -> list[list]:
    return [row for _id, fields in client.xrange(protocol.RESULTS_STREAM) for row in json.loads(fields[b"results"])]


def test_the_monitor_runs_on_uvloop() -> None:
    """The monitor's checks per second depend on its event loop (bench/monitor_throughput.py: uvloop probes
    12% more HTTP and 20% more TCP checks on the same CPU); uvloop is locked with uvicorn[standard], so a
    deployment that lost it would slow down silently."""
    from iot.service import event_loop_factory

    factory = event_loop_factory()
    assert factory is not None, "uvloop is not installed: the monitor would fall back to asyncio's loop"
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop"), type(loop)
    finally:
        loop.close()
