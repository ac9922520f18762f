"""Issue 12, case 6 (SSRF) end to end: internal addresses in every spelling are refused when a tenant
registers them (API and webhook URL) AND when a monitor is about to connect (devices written straight into
the database, names that resolve to internal addresses through a hosts-file stub); and nothing a target or
webhook receiver sends ever reaches the tenant: not in the API, not in the dashboard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis
from egress_stack import (
    LoopbackServer,
    Stack,
    answer_banner,
    answer_http_ok,
    answer_status_line,
    stack_for_test,
    tenant_client,
)
from egress_targets import (
    INTERNAL_HOSTS,
    LOOPBACK_HOSTS,
    bracket,
    hosts_stub_command,
    http_target,
    tcp_target,
    write_hosts_stub,
)
from iot_processes import wait_until

from iot.protocol import DEVICES_VERSION_KEY

pytestmark = pytest.mark.e2e

REFUSED = "address not allowed"
LEAK = b"x7q-leak-marker"


@pytest.fixture
def stack(postgres_server, redis_server, tmp_path: Path, request) -> Iterator[Stack]:
    with stack_for_test(postgres_server, redis_server, tmp_path, request, "egress") as running:
        yield running


@pytest.fixture
def hosts_stub(tmp_path: Path) -> list[str]:
    return hosts_stub_command(write_hosts_stub(tmp_path))


def _refused(response: httpx.Response, field: str) -> bool:
    return response.status_code == 422 and response.json()["errors"][0]["field"] == field


def test_internal_targets_are_refused_at_registration(stack: Stack, hosts_stub: list[str]) -> None:
    tracker = stack.service("tracker", ["tracker"], hosts_stub, EGRESS_ALLOW_CIDRS="")
    with tenant_client(tracker, "ssrf") as tenant:
        accepted: list[tuple[str, str, int]] = []
        for host in INTERNAL_HOSTS:
            for kind, target in (("http", http_target(host, 6379)), ("http", f"https://{bracket(host)}/"),
                                 ("tcp", tcp_target(host, 4646)), ("icmp", host)):
                response = tenant.post("/v1/devices", json={"name": f"{kind}-{target}", "kind": kind, "target": target})
                if not _refused(response, "target"):
                    accepted.append((kind, target, response.status_code))
            response = tenant.put("/v1/webhook", json={"url": f"https://{bracket(host)}/hook"})
            if not _refused(response, "url"):
                accepted.append(("webhook", host, response.status_code))
        assert accepted == [], f"{len(accepted)} internal targets were accepted: {accepted}"

        # the reason names the problem, and a bulk request names the item
        response = tenant.post("/v1/devices", json=[
            {"name": "ok-1", "kind": "icmp", "target": "pump-1.example.com"},
            {"name": "meta", "kind": "http", "target": "http://169.254.169.254/latest/meta-data/"}])
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "devices[1].target"
        assert "link-local" in response.json()["errors"][0]["reason"]
        assert "resolves to" in tenant.post("/v1/devices", json={
            "name": "n", "kind": "tcp", "target": "nomad.internal:4646"}).json()["errors"][0]["reason"]

        # public targets and names that do not resolve (yet) are fine; an edit cannot sneak one in
        for kind, target in (("http", "http://pump-1.example.com:8080/health"), ("tcp", "93.184.215.14:502"),
                             ("icmp", "2606:4700:4700::1111"), ("http", "https://[2606:4700:4700::1111]/")):
            response = tenant.post("/v1/devices", json={"name": f"public-{target}", "kind": kind, "target": target})
            assert response.status_code == 201, response.text
        device = tenant.get("/v1/devices", params={"kind": "tcp"}).json()["items"][0]["id"]
        for target in ("localhost:6379", "[::ffff:127.0.0.1]:6379", "2130706433:6379", "metadata.internal:80"):
            assert _refused(tenant.patch(f"/v1/devices/{device}", json={"target": target}), "target"), target
        assert tenant.get(f"/v1/devices/{device}").json()["target"] == "93.184.215.14:502"
        assert tenant.get("/v1/devices").json()["total"] == 4

        # webhooks: https to a public name is fine; plain http only to allow-listed addresses
        assert tenant.put("/v1/webhook", json={"url": "https://hooks.example.com/iot"}).status_code == 200
        plain = tenant.put("/v1/webhook", json={"url": "http://hooks.example.com/iot"})
        assert _refused(plain, "url") and "https" in plain.json()["errors"][0]["reason"]


async def _insert_devices(database_url: str, tenant_id: int, targets: list[tuple[str, str]]) -> list[int]:
    """Devices written straight into the database, as if registration had let them through."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "INSERT INTO devices (tenant_id, name, kind, target, interval_s, timeout_ms, token_hash) "
            "SELECT $1, 'd' || n, kind, target, 5, 1000, 'h' || n FROM unnest($2::text[], $3::text[]) "
            "WITH ORDINALITY AS t(kind, target, n) RETURNING id",
            tenant_id, [k for k, _ in targets], [t for _, t in targets])
        return [r["id"] for r in rows]
    finally:
        await conn.close()


def test_internal_targets_are_refused_at_probe_time(stack: Stack, hosts_stub: list[str]) -> None:
    listener = LoopbackServer(answer_http_ok).start()
    try:
        tracker = stack.service("tracker", ["tracker"])
        with tenant_client(tracker, "ssrf") as tenant:
            tenant_id = tenant.get("/v1/tenant").json()["id"]
            targets = [("http", http_target(h, listener.port)) for h in INTERNAL_HOSTS]
            targets += [("tcp", tcp_target(h, listener.port)) for h in INTERNAL_HOSTS]
            targets += [("icmp", h) for h in LOOPBACK_HOSTS if ":" not in h]
            ids = asyncio.run(_insert_devices(stack.database_url, tenant_id, targets))
            redis.Redis.from_url(stack.redis_url).incr(DEVICES_VERSION_KEY)
            # a monitor with NO allow-list, whose resolver knows the internal names
            stack.service("monitor", ["monitor"], hosts_stub, REGION="plain", EGRESS_ALLOW_CIDRS="",
                          HEARTBEAT_SECONDS=1)
            stack.service("worker", ["worker"], LOCK_TTL_SECONDS=5, REGION_ALIVE_SECONDS=8)

            def checked() -> dict[str, dict] | None:
                views = {}
                for device_id, (_kind, target) in zip(ids, targets, strict=True):
                    regions = tenant.get(f"/v1/devices/{device_id}").json()["regions"]
                    if not regions or regions[0]["last_checked_at"] is None:
                        return None
                    views[target] = regions[0]
                return views

            views = wait_until(checked, 60, "every device checked once", stack.procs, interval=1)
        wrong = {target: (v["last_ok"], v["last_error"]) for target, v in views.items()
                 if v["last_ok"] is not False or v["last_error"] != REFUSED}
        assert wrong == {}, f"{len(wrong)} of {len(views)} internal targets were not refused: {wrong}"
        assert listener.connections == 0
    finally:
        listener.stop()


def _dashboard_pages(dashboard_url: str, slug: str, api_key: str, device_ids: list[int]) -> dict[str, str]:
    host = {"Host": f"{slug}.localhost"}
    with httpx.Client(base_url=dashboard_url, headers=host, timeout=30) as client:
        assert client.post("/signin", data={"api_key": api_key, "next": "/"}).status_code == 303
        paths = ["/", "/devices", "/settings", *(f"/devices/{i}" for i in device_ids)]
        pages = {}
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            pages[f"dashboard {path}"] = response.text
        return pages


def test_bytes_sent_by_targets_and_receivers_never_reach_the_tenant(stack: Stack) -> None:
    banner = LoopbackServer(answer_banner(b"SSH-2.0-OpenSSH_9.2p1 " + LEAK + b"\r\n")).start()
    reason = LoopbackServer(answer_status_line(b"HTTP/1.1 503 " + LEAK)).start()
    try:
        tracker = stack.service("tracker", ["tracker"])
        for region, keepalive in (("plain", "false"), ("keepalive", "true")):
            stack.service(f"monitor-{region}", ["monitor"], REGION=region, HTTP_KEEPALIVE=keepalive,
                          HEARTBEAT_SECONDS=1)
        stack.service("worker", ["worker"], LOCK_TTL_SECONDS=5, REGION_ALIVE_SECONDS=8,
                      WEBHOOK_BACKOFF_SECONDS=1)
        dashboard = stack.service("dashboard", ["dashboard"], DOMAIN="localhost",
                                  SESSION_SECRET="egress-test-session-secret-0123456789")
        response = httpx.post(f"{tracker}/v1/tenants", json={"slug": "leaky"},
                              headers={"Authorization": "Bearer " + stack.common["ADMIN_TOKEN"]})
        api_key = response.json()["api_key"]
        with httpx.Client(base_url=tracker, headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as tenant:
            hook = tenant.put("/v1/webhook", json={"url": f"http://127.0.0.1:{banner.port}/hook",
                                                   "secret": "leaky-secret-0123456789"})
            assert hook.status_code == 200, hook.text
            specs = [("banner-http", f"http://127.0.0.1:{banner.port}/"),
                     ("banner-https", f"https://127.0.0.1:{banner.port}/"),
                     ("reason-http", f"http://127.0.0.1:{reason.port}/")]
            created = tenant.post("/v1/devices", json=[
                {"name": name, "kind": "http", "target": target, "interval_s": 5, "timeout_ms": 2000}
                for name, target in specs])
            assert created.status_code == 201, created.text
            ids = [d["id"] for d in created.json()["devices"]]

            def failing_everywhere_and_hook_tried() -> bool:
                for device_id in ids:
                    regions = tenant.get(f"/v1/devices/{device_id}").json()["regions"]
                    if len(regions) < 2 or not all(r["last_error"] for r in regions):
                        return False
                deliveries = tenant.get("/v1/webhook/deliveries").json()["items"]
                return any(d["attempts"] and d["last_error"] for d in deliveries)

            wait_until(failing_everywhere_and_hook_tried, 90, "errors in every region and a failed webhook",
                       stack.procs, interval=1)
            pages = {f"GET /v1/devices/{i}": tenant.get(f"/v1/devices/{i}").text for i in ids}
            pages["GET /v1/devices"] = tenant.get("/v1/devices").text
            pages["GET /v1/webhook/deliveries"] = tenant.get("/v1/webhook/deliveries").text
            pages.update(_dashboard_pages(dashboard, "leaky", api_key, ids))
            errors = sorted({r["last_error"] for i in ids for r in tenant.get(f"/v1/devices/{i}").json()["regions"]})
            print("errors the tenant sees:", errors)
        leaks = [name for name, text in pages.items() if LEAK.decode() in text or "SSH-2.0" in text]
        assert leaks == [], f"received bytes shown to the tenant in: {leaks}"
        assert banner.connections and reason.connections
    finally:
        banner.stop()
        reason.stop()


def test_the_listener_counts_connections() -> None:
    """Guard for the probe-time test: the listener does see a connection when one is made."""
    listener = LoopbackServer(answer_http_ok).start()
    try:
        for host in ("127.0.0.1", "[::1]"):
            assert httpx.get(f"http://{host}:{listener.port}/").status_code == 200
        deadline = time.monotonic() + 5
        while listener.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.connections == 2
    finally:
        listener.stop()
