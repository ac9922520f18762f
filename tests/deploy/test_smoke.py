"""deploy.smoke: the checks e2e-cloud.yml runs against a real stack, exercised here on loopback.

The dry run starts the real apps (`iot tracker`, `dashboard`, `worker`, three `monitor`s with the
monitor nodes' METRICS_PORT) against real PostgreSQL and Redis, then runs `python -m deploy.smoke
--dry-run`: every host answers with its app, monitor /metrics is not on the public listener, and a
test device goes DOWN and UP through the whole pipeline.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from iot_processes import ADMIN_TOKEN, REGIONS, Procs, iot_env, run_iot
from servers import free_port

from components.edge_layout import EXPLICIT_HOSTS
from deploy import smoke
from deploy.plan import _cached_run, run_plan
from deploy.smoke_checks import Endpoint, NomadAccess, nomad_alive, path_not_served, port_closed

ROOT = Path(__file__).resolve().parents[2]


class JsonServer(ThreadingHTTPServer):
    """A loopback HTTP server answering GET paths from a dict: path -> (status, JSON body)."""

    def __init__(self, routes: dict[str, tuple[int, object]]) -> None:
        routes_ = routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                status, body = routes_.get(self.path, (404, {"error": "not found"}))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_a_closed_port_passes_and_an_open_one_fails():
    closed = free_port()
    assert port_closed("127.0.0.1", closed, "nothing listens").ok
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        check = port_closed("127.0.0.1", listener.getsockname()[1], "a listener")
    assert not check.ok and "accepted a connection" in check.detail


@pytest.mark.parametrize(("member_status", "node_status", "ok"), [
    ("alive", "ready", True), ("failed", "ready", False), ("alive", "down", False)])
def test_nomad_needs_every_server_alive_and_every_client_ready(member_status, node_status, ok):
    server = JsonServer({
        "/v1/agent/members": (200, {"Members": [{"Name": "a", "Status": "alive"}, {"Name": "b", "Status": member_status}]}),
        "/v1/nodes": (200, [{"Name": "a", "Status": "ready", "SchedulingEligibility": "eligible"},
                            {"Name": "b", "Status": node_status, "SchedulingEligibility": "eligible"}]),
    })
    try:
        check = nomad_alive(NomadAccess(server.url, "token", None, None, None, expected_nodes=2))
    finally:
        server.shutdown()
    assert check.ok is ok, check.detail


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_real_run_checks_every_public_host_of_the_stack(stack, tmp_path):
    """from_outputs covers what the program publishes; the plan's fake PEMs stand in for the secrets."""
    resources = run_plan(stack)
    outputs = dict(_cached_run(stack).outputs)
    for key in ("caCertPem", "nomadClientCertPem", "nomadClientKeyPem", "nomadToken", "trackerAdminToken"):
        outputs[key] = f"fake-{key}"
    target = smoke.from_outputs(outputs, tmp_path)
    checked = {endpoint.hostname for endpoint, _ in target.hosts}
    published = {r.inputs["name"] for r in resources
                 if r.type in ("cloudflare:index/dnsRecord:DnsRecord", "cloudflare:index/loadBalancer:LoadBalancer")}
    domain = outputs["domain"]
    assert published - {f"*.{domain}"} <= checked
    assert any(kind == "dashboard" and host.hostname.endswith(f".{domain}") for host, kind in target.hosts)
    assert set(EXPLICIT_HOSTS) <= set(smoke.HOST_KINDS)
    assert {(e.hostname, p) for e, p in target.not_public} >= {(f"worker.{domain}", "/status")}
    assert len(target.closed_ports) == 2 * len(outputs["nodes"]) + len(outputs["monitors"])
    assert target.nomad.expected_nodes == len(outputs["nodes"])
    unpublished = {**outputs, "hostnames": [h for h in outputs["hostnames"] if h.startswith(("www.", "tracker."))]}
    (tmp_path / "partial").mkdir()
    partial = smoke.from_outputs(unpublished, tmp_path / "partial")
    assert not [kind for _, kind in partial.hosts if kind.startswith("monitor:")], "no monitor host to check"
    assert all(oct(p.stat().st_mode)[-3:] == "600" for p in tmp_path.glob("*.pem")), "key files are private"


@pytest.fixture
def local_stack(postgres_server, redis_server, tmp_path: Path):
    """tracker, dashboard, worker and one monitor per region, as real processes on loopback."""
    database_url = postgres_server.create_database(f"smoke_{tmp_path.name[:40]}".replace("-", "_"))
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    common = {"DATABASE_URL": database_url, "REDIS_URL": redis_server.url, "APP_HOST": "127.0.0.1",
              "LOG_LEVEL": "info", "MONITOR_NAMES": ",".join(REGIONS), "DOMAIN": "localhost"}
    run_iot(["migrate"], iot_env(**common))
    procs = Procs(tmp_path, common)
    urls: dict[str, str] = {}
    metrics_ports: dict[str, int] = {}

    def spawn(name: str, args: list[str], **env: object) -> None:
        urls[name] = procs.service(name, args, **env)

    target = JsonServer({"/ok": (200, {"ok": True}), "/gone": (404, {"ok": False})})
    try:
        spawn("tracker", ["tracker"], ADMIN_TOKEN=ADMIN_TOKEN)
        spawn("dashboard", ["dashboard"], SESSION_SECRET="smoke-test-session-secret-0123456789")
        spawn("worker", ["worker"], LOCK_TTL_SECONDS=5, REGION_ALIVE_SECONDS=8)
        for region, source in REGIONS.items():
            metrics_ports[region] = free_port()
            spawn(f"monitor-{region}", ["monitor"], REGION=region, MONITOR_SOURCE_ADDRESS=source,
                  HEARTBEAT_SECONDS=2, METRICS_PORT=metrics_ports[region])
        yield urls, target.url, metrics_ports
    finally:
        target.shutdown()
        procs.stop()


@pytest.mark.e2e
def test_the_dry_run_passes_against_the_local_stack(local_stack, tmp_path):
    urls, target_url, metrics_ports = local_stack
    local = {
        "domain": "localhost",
        "hosts": {
            "tracker.localhost": [urls["tracker"], "tracker"],
            "collect.localhost": [urls["tracker"], "tracker"],
            "acme.localhost": [urls["dashboard"], "dashboard"],
            **{f"{r}.localhost": [urls[f"monitor-{r}"], f"monitor:{r}"] for r in REGIONS},
        },
        "notPublic": [[f"{r}.localhost", urls[f"monitor-{r}"], "/metrics"] for r in REGIONS],
        "trackerAdminToken": ADMIN_TOKEN,
        "device": {"up": f"{target_url}/ok", "down": f"{target_url}/gone", "intervalS": 5, "timeoutS": 120},
    }
    local_file = tmp_path / "local.json"
    local_file.write_text(json.dumps(local))
    summary = tmp_path / "summary.md"
    done = subprocess.run([sys.executable, "-m", "deploy.smoke", "--dry-run", "--local", str(local_file)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert all("| ok |" in row or "| skipped |" in row for row in rows), done.stdout
    assert sum("| ok |" in row for row in rows) == len(local["hosts"]) + len(local["notPublic"]) + 1
    assert "a test device goes DOWN and UP | ok" in done.stdout
    assert "Nomad servers and clients | skipped" in done.stdout
    assert "(dry run)" in summary.read_text()
    # The monitors' /metrics still exists, on the port the nodes never publish.
    import httpx

    for region, port in metrics_ports.items():
        assert "iot_monitor_" in httpx.get(f"http://127.0.0.1:{port}/metrics").text, region


@pytest.mark.e2e
def test_a_public_status_page_fails_the_check(local_stack):
    """The check can fail: locally nothing shields the worker's /status, and the check says so."""
    urls, _, _ = local_stack
    check = path_not_served(Endpoint("worker.localhost", urls["worker"]), "/status", through_edge=False)
    assert not check.ok and "answered 200" in check.detail
