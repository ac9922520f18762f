"""Public status pages (issue 14) in the dashboard app: `GET /status/<slug>` without sign-in shows the
page's components (current state, 90 daily uptime bars with the %), open and recent incidents with their
notes, active and scheduled maintenance, and nothing private (targets, error texts, regions, summaries,
note authors, other tenants' devices). Cacheable (Cache-Control, ETag, 304), unpublished or unknown -> 404,
and an edit in the management page shows at once. Uptime % equals iot.repo.history's for a scripted
pattern. In real Chromium at 1440 px and 390 px with screenshots (test-artifacts/dashboard/)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from redis import Redis

from dashboard.harness import ROOT, create_devices, csrf_of, new_tenant, run, sql
from iot import status_pages
from iot.db import connect
from iot.repo import history
from iot.repo import status_pages as repo
from iot.repo.devices import DeviceSpec
from iot.repo.status_pages import PageSpec

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
SECRET_TARGET = "http://127.0.0.1:9/private-health-path"
SECRET_ERROR = "connect refused by private-backend-7"


async def _create_page(database_url: str, tenant_id: int, spec: PageSpec) -> int:
    conn = await connect(database_url)
    try:
        return (await repo.create_page(conn, tenant_id, spec)).id
    finally:
        await conn.close()


async def _uptime(database_url: str, tenant_id: int, device_id: int) -> history.UptimeReport:
    conn = await connect(database_url)
    try:
        return await history.uptime_report(conn, tenant_id, device_id, "90d")
    finally:
        await conn.close()


def _fleet(dashboard, slug: str):
    """A tenant with a page of `api` (by tag), `db` (by id), an unlisted device, and another tenant whose
    device carries the same tag. `api` was up 10 days with one 2-hour outage 5 days ago (99.1667 %)."""
    url = dashboard.database_url
    tenant = new_tenant(url, slug)
    other = new_tenant(url, slug + "-other")
    api, db, hidden = create_devices(url, tenant, [
        DeviceSpec("api-gateway", "http", SECRET_TARGET, tags=["public/web"]),
        DeviceSpec("orders-db", "tcp", "127.3.9.2:5432"),
        DeviceSpec("internal-backoffice", "tcp", "127.3.9.3:22", tags=["internal"])])
    (foreign,) = create_devices(url, other, [DeviceSpec("foreign-device", "tcp", "127.3.9.4:1", tags=["public/web"])])
    sql(url, "UPDATE devices SET state = 'up', state_since = now() - interval '10 days' WHERE id = ANY($1::bigint[])",
        [api, db, hidden, foreign])
    sql(url, "INSERT INTO device_state_changes (tenant_id, device_id, at, state, previous) VALUES "
        "($1, $2, now() - interval '5 days', 'down', 'up'), ($1, $2, now() - interval '5 days' + interval '2 hours', "
        "'up', 'down')", tenant.id, api)
    sql(url, "INSERT INTO device_region_state (device_id, region, state, last_ok, last_error) "
        "VALUES ($1, 'frankfurt', 'down', false, $2)", api, SECRET_ERROR)
    (incident,) = sql(url, "INSERT INTO incidents (tenant_id, device_id, kind, summary, opened_at, resolved_at) VALUES "
                      "($1, $2, 'down', $3, now() - interval '5 days', now() - interval '5 days' + interval '2 hours') "
                      "RETURNING id", tenant.id, api, f"api-gateway down from frankfurt: {SECRET_TARGET}")
    sql(url, "INSERT INTO incident_events (tenant_id, incident_id, at, kind, actor, text) VALUES "
        "($1, $2, now() - interval '5 days' + interval '30 minutes', 'note', 'alice@corp.internal', "
        "'We found the cause and are rolling back.')", tenant.id, incident["id"])
    sql(url, "INSERT INTO incidents (tenant_id, device_id, kind, summary, opened_at) VALUES "
        "($1, $2, 'down', 'not on the page', now() - interval '1 hour')", tenant.id, hidden)
    sql(url, "INSERT INTO maintenance_windows (tenant_id, scope, device_id, reason, starts_at, ends_at) VALUES "
        "($1, 'device', $2, 'Database upgrade', now() - interval '10 minutes', now() + interval '50 minutes')",
        tenant.id, db)
    sql(url, "INSERT INTO maintenance_windows (tenant_id, scope, reason, starts_at, ends_at) VALUES "
        "($1, 'tenant', 'Network move', now() + interval '3 days', now() + interval '3 days 2 hours')", tenant.id)
    page_id = run(_create_page(url, tenant.id, PageSpec(
        "public", "Acme service status", "Live status of our public services.", device_ids=[db],
        tags=["public/web"], published=True)))
    run(_create_page(url, tenant.id, PageSpec("draft", "Draft page", device_ids=[hidden])))
    return tenant, other, {"api": api, "db": db, "hidden": hidden, "foreign": foreign}, page_id


def test_the_public_page_shows_components_bars_incidents_and_maintenance_and_nothing_private(dashboard) -> None:
    tenant, other, ids, _page_id = _fleet(dashboard, "statusco")
    anonymous = dashboard.client(tenant)
    response = anonymous.get("/status/public")
    assert response.status_code == 200, response.text
    html = response.text
    assert "<title>Acme service status</title>" in html and "Live status of our public services." in html
    assert re.findall(r"<h3>([^<]+)</h3>", html) == ["api-gateway", "orders-db"]
    assert len(re.findall(r'<i class="bar ', html)) == 2 * 90
    assert 'class="badge state-maintenance">Under maintenance<' in html  # orders-db, inside its window
    assert 'class="badge state-up">Operational<' in html
    assert '<h1>Maintenance in progress</h1>' in html
    # incidents: the listed device's, with the note; not the unlisted device's open one
    assert "Outage: api-gateway" in html and "We found the cause and are rolling back." in html
    assert "not on the page" not in html and "internal-backoffice" not in html
    assert "In progress:</strong> Database upgrade" in html and "Scheduled:</strong> Network move" in html
    # nothing private
    for private in (SECRET_TARGET, "private-health-path", SECRET_ERROR, "frankfurt", "alice@corp", "foreign-device",
                    "127.3.9", "/devices/", "csrf"):
        assert private not in html, private
    for device_id in ids.values():
        assert f'"{device_id}"' not in html and f"/{device_id}" not in html


def test_uptime_on_the_page_equals_the_history_repository(dashboard) -> None:
    tenant, _other, ids, _page_id = _fleet(dashboard, "statusup")
    html = dashboard.client(tenant).get("/status/public").text
    report = run(_uptime(dashboard.database_url, tenant.id, ids["api"]))
    expected = 100 * (1 - 2 / (10 * 24))  # 2 hours down in 10 days observed
    assert abs(report.total.percent - expected) < 0.01
    head = re.search(r"<h3>api-gateway</h3>\s*<span class=\"status-figure\">([\d.]+) %", html)
    assert head and head.group(1) == f"{report.total.percent:.2f}" == "99.17"
    # the day of the outage reads the same as the repository's daily bucket
    day = next(d for d in report.days if d.down_seconds > 0)
    assert f'title="{day.start:%Y-%m-%d}: {day.percent:.2f} % up, 2 h 0 min down"' in html


def test_caching_headers_conditional_requests_and_not_found(dashboard) -> None:
    tenant, other, ids, _page_id = _fleet(dashboard, "statuscache")
    anonymous = dashboard.client(tenant)
    first = anonymous.get("/status/public")
    assert first.headers["cache-control"] == "public, max-age=30"
    etag = first.headers["etag"]
    assert re.fullmatch(r'W/"[0-9a-f]{24}"', etag)
    assert first.headers["content-encoding"] == "gzip" and first.headers["vary"] == "Accept-Encoding"
    plain = anonymous.get("/status/public", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.text == first.text and plain.headers["etag"] == etag
    again = anonymous.get("/status/public", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert anonymous.get("/status/public", headers={"If-None-Match": '"other"'}).status_code == 200
    assert "img-src 'self' data: https:" in first.headers["content-security-policy"]
    # served from the cache for up to max-age: a state change shows once the entry is gone
    sql(dashboard.database_url, "UPDATE devices SET state = 'down' WHERE id = $1", ids["api"])
    assert "<h1>Maintenance in progress</h1>" in anonymous.get("/status/public").text
    redis = Redis.from_url(dashboard.redis_url)
    try:
        assert 0 < redis.ttl(status_pages.cache_key(tenant.id, "public")) <= 30
        redis.delete(status_pages.cache_key(tenant.id, "public"))
    finally:
        redis.close()
    fresh = anonymous.get("/status/public")
    assert "<h1>Partial outage</h1>" in fresh.text and 'class="badge state-down">Outage<' in fresh.text
    assert fresh.headers["etag"] != etag
    for path in ("/status/draft", "/status/nosuch", "/status/Bad%20Slug", "/status/" + "x" * 80):
        missing = anonymous.get(path)
        assert missing.status_code == 404 and "There is no such status page here." in missing.text, path
        assert missing.headers["cache-control"] == "no-store"
    # the other tenant's host does not serve this tenant's page, nor the apex
    assert dashboard.client(other).get("/status/public").status_code == 404
    assert dashboard.client("localhost").get("/status/public").status_code == 404


def test_the_management_page_adds_edits_and_deletes_and_the_public_page_follows_at_once(dashboard) -> None:
    tenant, _other, ids, page_id = _fleet(dashboard, "statusmgmt")
    client = dashboard.signed_in(tenant)
    anonymous = dashboard.client(tenant)
    listing = client.get("/status-pages")
    assert listing.status_code == 200
    assert '<a href="/status/public" class="view-public">View public page</a>' in listing.text
    assert 'href="/status-pages"' in listing.text and ">Status pages</a>" in listing.text  # the nav entry
    csrf = csrf_of(listing.text)
    assert client.post("/status-pages", data={"slug": "x", "title": "X"}).status_code == 403  # no CSRF token
    refused = client.post("/status-pages", data={"csrf": csrf, "slug": "new", "title": "New",
                                                  "logo_url": "http://example.com/l.png"})
    assert refused.status_code == 422 and "logo_url: must be an https:// address" in refused.text
    refused = client.post("/status-pages", data={"csrf": csrf, "slug": "new", "title": "New",
                                                  "device_ids": f"{ids['foreign']}"})
    assert refused.status_code == 422 and f"device_ids[0]: no such device: {ids['foreign']}" in refused.text
    taken = client.post("/status-pages", data={"csrf": csrf, "slug": "public", "title": "Again"})
    assert taken.status_code == 409 and "another of your status pages is at /status/public" in taken.text
    made = client.post("/status-pages", data={"csrf": csrf, "slug": "ops", "title": "Ops status",
                                               "device_ids": f"{ids['hidden']}", "published": "on"})
    assert made.status_code == 303
    assert "<h3>internal-backoffice</h3>" in anonymous.get("/status/ops").text

    # the public page is cached, and an edit drops the cache: unpublished is 404 at once
    assert anonymous.get("/status/public").status_code == 200
    edit = client.get(f"/status-pages/{page_id}")
    assert 'value="public/web"' in edit.text and f'value="{ids["db"]}"' in edit.text
    saved = client.post(f"/status-pages/{page_id}", data={"csrf": csrf, "slug": "public", "title": "Renamed",
                                                           "tags": "public/web"})
    assert saved.status_code == 303
    assert anonymous.get("/status/public").status_code == 404
    client.post(f"/status-pages/{page_id}", data={"csrf": csrf, "slug": "public", "title": "Renamed",
                                                  "tags": "public/web", "published": "on"})
    republished = anonymous.get("/status/public").text
    assert "<title>Renamed</title>" in republished and "orders-db" not in republished
    assert client.post(f"/status-pages/{page_id}/delete", data={"csrf": csrf}).status_code == 303
    assert anonymous.get("/status/public").status_code == 404
    assert client.get(f"/status-pages/{page_id}").status_code == 404


def test_another_tenant_cannot_manage_the_page(dashboard) -> None:
    tenant, other, _ids, page_id = _fleet(dashboard, "statusiso")
    intruder = dashboard.signed_in(other)
    assert intruder.get(f"/status-pages/{page_id}").status_code == 404
    csrf = csrf_of(intruder.get("/status-pages").text)
    assert intruder.post(f"/status-pages/{page_id}", data={"csrf": csrf, "slug": "public", "title": "Mine"}
                         ).status_code == 404
    assert intruder.post(f"/status-pages/{page_id}/delete", data={"csrf": csrf}).status_code == 404
    assert "Acme service status" in dashboard.client(tenant).get("/status/public").text


@pytest.fixture
def browser_fleet(dashboard):
    """Set up before the browser starts: Playwright's sync API keeps an event loop running in this thread."""
    return _fleet(dashboard, "statusbrowser")


@pytest.fixture
def browser_page() -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


@pytest.mark.browser
def test_the_public_page_in_chromium_at_1440_and_390_px(dashboard, browser_fleet, browser_page: Page) -> None:
    tenant, _other, _ids, _page_id = browser_fleet
    page = browser_page
    url = f"http://{tenant.host}:{dashboard.port}/status/public"
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(url)
        expect(page.locator("#overall h1")).to_have_text("Maintenance in progress")
        expect(page.locator(".status-component")).to_have_count(2)
        expect(page.locator(".status-component").nth(0).locator(".bar")).to_have_count(90)
        expect(page.locator("#incidents")).to_contain_text("We found the cause and are rolling back.")
        expect(page.locator("#maintenance")).to_contain_text("Database upgrade")
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], (width, widths)
        bar = page.locator(".status-component").nth(0).locator(".bar").first.bounding_box()
        assert bar and bar["width"] > 1 and bar["height"] > 10  # 90 bars still visible on a phone
        page.screenshot(path=str(ARTIFACTS / f"status-page-{width}.png"), full_page=True)
    assert not page.evaluate("document.querySelector('input, form')"), "a public page has no forms"


async def _reports(database_url: str, tenant_id: int, ids: list[int]) -> dict:
    conn = await connect(database_url)
    try:
        return await history.uptime_reports(conn, tenant_id, ids, "90d")
    finally:
        await conn.close()


def test_a_page_of_more_components_than_one_uptime_chunk_shows_each_figure(dashboard) -> None:
    url = dashboard.database_url
    tenant = new_tenant(url, "statusmany")
    count = status_pages.UPTIME_CHUNK * 2 + 3
    ids = create_devices(url, tenant, [DeviceSpec(f"node-{i:02d}", "tcp", f"127.3.8.{i + 1}:1", tags=["fleet"])
                                       for i in range(count)])
    sql(url, "UPDATE devices SET state = 'up', state_since = now() - interval '3 days' WHERE tenant_id = $1",
        tenant.id)
    # node-NN is down for NN minutes, two days ago
    sql(url, "INSERT INTO device_state_changes (tenant_id, device_id, at, state, previous) "
        "SELECT $1::bigint, d, now() - interval '2 days', 'down', 'up' FROM unnest($2::bigint[]) d UNION ALL "
        "SELECT $1::bigint, d, now() - interval '2 days' + n * interval '1 minute', 'up', 'down' "
        "FROM unnest($2::bigint[], $3::int[]) AS x(d, n)", tenant.id, ids, list(range(1, count + 1)))
    run(_create_page(url, tenant.id, PageSpec("all", "All nodes", tags=["fleet"], published=True)))
    html = dashboard.client(tenant).get("/status/all").text
    shown = dict(re.findall(r"<h3>(node-\d+)</h3>\s*<span class=\"status-figure\">([\d.]+) %", html))
    reports = run(_reports(url, tenant.id, ids))
    assert len(shown) == count and len(re.findall(r'<i class="bar ', html)) == 90 * count
    for i, device_id in enumerate(ids):
        assert shown[f"node-{i:02d}"] == f"{reports[device_id].total.percent:.2f}"
    assert shown["node-00"] != shown[f"node-{count - 1:02d}"]
