"""Richer checks end to end (issue 15): devices registered through the API with options reach the monitors
through the worker's batches and are judged by the evaluator. All real processes: tracker, worker, three
monitors; targets are local servers (HTTP with an API key and JSON, TLS with short-lived certificates from
a test CA the monitors trust through TLS_CA_FILE, DNS on loopback)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from dns_zone import start_zone_server
from iot_processes import ADMIN_TOKEN, wait_until
from tls_certs import NOW, Pki

pytestmark = pytest.mark.e2e

INTERVAL_S = 5


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        if self.headers.get("X-Api-Key") != "k-1":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps({"status": "ok", "note": "all ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _TlsServers:
    """TLS listeners on loopback, served by an event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.Server] = []

    def add(self, context) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.servers.append(server)
        return f"127.0.0.1:{server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        for server in self.servers:
            self.loop.call_soon_threadsafe(server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_http_tls_and_dns_options_are_checked_end_to_end(pipeline_factory, tmp_path) -> None:
    pki = Pki(tmp_path)
    tls = _TlsServers()
    api = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    dns_server, resolver = start_zone_server()
    try:
        fine = tls.add(pki.leaf("fine", not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=90)))
        soon = tls.add(pki.leaf("soon", not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=5, hours=1)))
        url = f"http://127.0.0.1:{api.server_address[1]}/status"
        pipeline = pipeline_factory(1, monitor_env={"TLS_CA_FILE": str(pki.ca_file)})
        with httpx.Client(base_url=pipeline.tracker_url, timeout=30) as admin:
            created = admin.post("/v1/tenants", json={"slug": "checks"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert created.status_code == 201, created.text
            api_key = created.json()["api_key"]
        expected = {
            "keyed": ("up", None),
            "no-key": ("down", "HTTP 401, expected below 400"),
            "unwanted": ("down", "unwanted keyword found in the response body"),
            "cert-fine": ("up", None),
            "cert-soon": ("degraded", "TLS certificate expires in 5 days"),
            "mx": ("up", None),
            "mx-wrong": ("down", "no MX record equals the expected value"),
        }
        every = {"interval_s": INTERVAL_S, "timeout_ms": 2000}
        with pipeline.tracker(api_key) as tenant:
            response = tenant.post("/v1/devices", json=[
                {"name": "keyed", "kind": "http", "target": url, **every,
                 "options": {"headers": {"X-Api-Key": "k-1"}, "json_path": "$.status", "json_equals": "ok"}},
                {"name": "no-key", "kind": "http", "target": url, **every, "options": {"json_path": "$.status", "json_equals": "ok"}},
                {"name": "unwanted", "kind": "http", "target": url, **every,
                 "options": {"headers": {"X-Api-Key": "k-1"}, "absent_keyword": "all ok"}},
                {"name": "cert-fine", "kind": "tls", "target": fine, **every},
                {"name": "cert-soon", "kind": "tls", "target": soon, **every},
                {"name": "mx", "kind": "dns", "target": "example.com", **every,
                 "options": {"record_type": "MX", "expected": "mail.example.com", "resolver": resolver}},
                {"name": "mx-wrong", "kind": "dns", "target": "example.com", **every, "retries": 1,
                 "options": {"record_type": "MX", "expected": "other.example.com", "resolver": resolver}},
            ])
            assert response.status_code == 201, response.text
            ids = {d["name"]: d["id"] for d in response.json()["devices"]}

            def settled() -> dict | None:
                seen = {}
                for name, device_id in ids.items():
                    detail = tenant.get(f"/v1/devices/{device_id}").json()
                    if detail["state"] != expected[name][0]:
                        return None
                    seen[name] = detail
                return seen

            details = wait_until(settled, 6 * INTERVAL_S + 20, "every device in its expected state", pipeline.procs)
            for name, (_state, error) in expected.items():
                errors = {r["last_error"] for r in details[name]["regions"]}
                assert errors == {error}, (name, details[name]["regions"])
            assert details["keyed"]["options"]["headers"] == {"X-Api-Key": "•••"}  # noqa: RUF001
            incidents = tenant.get("/v1/incidents", params={"device_id": ids["cert-soon"]}).json()["items"]
            assert incidents and "is degraded: TLS certificate expires in 5 days" in incidents[0]["summary"]
    finally:
        dns_server.stop()
        api.shutdown()
        tls.close()
