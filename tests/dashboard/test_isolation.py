"""Tenant isolation: a session for acme gets 404/403 on every route of beta, by Host and by device id."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import httpx
import pytest

from dashboard.harness import (
    TenantKey,
    create_devices,
    csrf_of,
    run,
    setup_tenants,
    sql,
    start_dashboard,
)
from iot.dashboard.app import create_app
from iot.dashboard.session import COOKIE_NAME
from iot.repo.devices import DeviceSpec
from iot.settings import DashboardSettings


def dashboard_routes() -> list[tuple[str, str]]:
    """(method, path template) of every tenant route the app has, read from the app itself."""
    # The OpenAPI document lists every route, including those of included routers.
    schema = create_app(DashboardSettings()).openapi()
    out = [(method.upper(), path) for path, ops in schema["paths"].items() if path != "/health" for method in ops]
    assert len(out) >= 15, out
    return out


def fill(path: str, device_id: int) -> str:
    return path.replace("{device_id}", str(device_id))


@pytest.fixture(scope="module")
def fleets(dashboard):
    acme, beta = dashboard.acme, dashboard.beta
    acme_ids = create_devices(dashboard.database_url, acme, [DeviceSpec("acme-pump", "http", "http://127.0.0.1:9/")])
    beta_ids = create_devices(dashboard.database_url, beta, [DeviceSpec("beta-secret-gateway", "tcp", "127.0.0.1:9")])
    return acme_ids[0], beta_ids[0]


def beta_unchanged(dashboard, beta: TenantKey, beta_device: int) -> None:
    rows = sql(dashboard.database_url, "SELECT name, target FROM devices WHERE id = $1", beta_device)
    assert [tuple(r) for r in rows] == [("beta-secret-gateway", "127.0.0.1:9")]
    webhook = sql(dashboard.database_url, "SELECT webhook_url FROM tenants WHERE id = $1", beta.id)
    assert webhook[0]["webhook_url"] is None
    # beta's API key still signs in: it was not rotated by acme.
    assert dashboard.client(beta).post("/signin", data={"api_key": beta.api_key}).status_code == 303


def test_acme_session_is_refused_on_every_route_of_beta_host(dashboard, tenant_pair, fleets) -> None:
    acme, beta = tenant_pair
    _, beta_device = fleets
    acme_client = dashboard.signed_in(acme)
    cookie = acme_client.cookies[COOKIE_NAME]
    csrf = csrf_of(acme_client.get("/settings").text)
    # The browser would never send acme's host-only cookie to beta.localhost; replay it by hand.
    with httpx.Client(base_url=dashboard.url, headers={"Host": beta.host, "Cookie": f"{COOKIE_NAME}={cookie}"},
                      timeout=10) as replay:
        for method, path in dashboard_routes():
            data = {"csrf": csrf, "name": "pwned", "kind": "http", "target": "http://evil.example/",
                    "webhook_url": "https://evil.example/hook", "api_key": "x", "csv_text": "name,kind\nx,icmp\n"}
            response = replay.request(method, fill(path, beta_device), data=data if method == "POST" else None)
            if path == "/signin":
                # The sign-in form itself is public, but acme's session is still refused there.
                assert response.status_code in (401, 403), (method, path, response.status_code)
            else:
                assert response.status_code in (403, 404), (method, path, response.status_code)
            assert "beta-secret-gateway" not in response.text
    beta_unchanged(dashboard, beta, beta_device)


def test_acme_session_gets_404_for_beta_device_ids_on_its_own_host(dashboard, tenant_pair, fleets) -> None:
    acme, beta = tenant_pair
    acme_device, beta_device = fleets
    client = dashboard.signed_in(acme)
    csrf = csrf_of(client.get("/settings").text)
    device_routes = [(m, p) for m, p in dashboard_routes() if "{device_id}" in p]
    assert len(device_routes) >= 6
    for method, path in device_routes:
        data = {"csrf": csrf, "name": "pwned", "kind": "http", "target": "http://evil.example/"}
        response = client.request(method, fill(path, beta_device), data=data if method == "POST" else None)
        assert response.status_code == 404, (method, path, response.status_code)
        assert "beta-secret-gateway" not in response.text
        # The same route works for acme's own device (so the 404 above is about ownership).
        if method == "GET":
            assert client.get(fill(path, acme_device)).status_code == 200, path
    beta_unchanged(dashboard, beta, beta_device)
    # acme's lists never show beta's devices, whatever the filter.
    for query in ("", "?q=beta", "?q=secret&state=unknown", "?sort=latency&dir=desc"):
        page = client.get("/devices" + query).text
        assert "beta-secret-gateway" not in page


def test_forged_or_foreign_cookie_never_signs_in(dashboard, tenant_pair) -> None:
    acme, beta = tenant_pair
    for value in ("garbage", "eyJ0aWQiOjJ9.forged.signature"):
        with dashboard.client(beta) as client:
            client.cookies.set(COOKIE_NAME, value)
            response = client.get("/devices")
            assert response.status_code == 303 and response.headers["location"].startswith("/signin")
    # acme's key on beta's sign-in form is refused with a clear message.
    with dashboard.client(beta) as client:
        response = client.post("/signin", data={"api_key": acme.api_key})
        assert response.status_code == 401
        assert "not an API key of beta" in response.text
        assert COOKIE_NAME not in response.cookies


def test_unknown_tenant_and_reserved_hosts_get_a_clear_404(dashboard) -> None:
    for host in ("nosuch.localhost", "docs.localhost", "frankfurt.localhost", "localhost", "a.b.localhost"):
        with dashboard.client(host) as client:
            response = client.get("/")
            assert response.status_code == 404, host
            assert "Not found" in response.text
            assert 'href="//localhost/"' in response.text, "the way out leads to the product's start page"
    with dashboard.client("nosuch.localhost") as client:
        assert "no tenant named 'nosuch'" in html.unescape(client.get("/signin").text)


def test_pages_of_hosts_that_are_not_a_tenant_lead_to_the_marketing_site(postgres_server, redis_server,
                                                                         tmp_path) -> None:
    """Served on a port of its own (as `iot demo` does), the dashboard's way out of an unknown tenant must
    reach the marketing site, not this host's `/`, which is the same error page again."""
    database_url = postgres_server.create_database("dashboard_marketing")
    run(setup_tenants(database_url, ()))
    marketing = "http://localhost:8089/"
    proc, port = start_dashboard(database_url, redis_server.url, tmp_path / "dashboard.log", MARKETING_URL=marketing)
    try:
        for host in (f"nosuch.localhost:{port}", f"localhost:{port}", f"docs.localhost:{port}"):
            for path in ("/", "/devices", "/no/such/page"):
                response = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=10)
                assert response.status_code == 404, (host, path)
                # In-page anchors (the skip link to #main) stay on the page: they are no way out.
                links = [urljoin(f"http://{host}{path}", href)
                         for href in re.findall(r'<a [^>]*href="([^"]*)"', response.text) if not href.startswith("#")]
                assert marketing in links, (host, path, links)
                assert not [link for link in links if link.startswith(f"http://{host}/")], (host, path, links)
    finally:
        proc.stop()
