"""The dashboard's pages against a real database and a running `iot dashboard` (HTTP level)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import httpx
import redis as redis_sync

from dashboard.harness import create_devices, csrf_of, new_tenant, sql
from iot.dashboard.session import COOKIE_NAME
from iot.protocol import DEVICES_VERSION_KEY, MONITOR_HEARTBEATS_KEY
from iot.repo.devices import DeviceSpec


def text(response: httpx.Response) -> str:
    return html.unescape(response.text)


def test_sign_in_sets_a_host_only_httponly_lax_cookie_and_returns_to_the_page(dashboard) -> None:
    acme = dashboard.acme
    with dashboard.client(acme) as client:
        first = client.get("/devices?state=down")
        assert first.status_code == 303
        assert first.headers["location"] == "/signin?next=%2Fdevices%3Fstate%3Ddown"
        form = client.get(first.headers["location"])
        assert 'name="next" value="/devices?state=down"' in form.text
        wrong = client.post("/signin", data={"api_key": "iotk_wrong", "next": "/devices?state=down"})
        assert wrong.status_code == 401 and "not an API key of acme" in text(wrong)
        ok = client.post("/signin", data={"api_key": acme.api_key, "next": "/devices?state=down"})
        assert ok.status_code == 303 and ok.headers["location"] == "/devices?state=down"
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE_NAME}=")
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "path", "max-age"} <= attributes
        assert "samesite=lax" in cookie.lower()
        assert "domain" not in attributes, "host-only: never shared with other tenants' subdomains"
        assert client.get("/devices?state=down").status_code == 200
        # An open redirect through `next` is refused.
        away = client.post("/signin", data={"api_key": acme.api_key, "next": "//evil.example/"})
        assert away.headers["location"] == "/"


def test_sign_in_from_a_foreign_origin_is_refused(dashboard) -> None:
    with dashboard.client(dashboard.acme) as client:
        response = client.post("/signin", data={"api_key": dashboard.acme.api_key},
                               headers={"Origin": "http://evil.example"})
        assert response.status_code == 403 and COOKIE_NAME not in response.cookies


def test_state_changes_need_the_session_csrf_token(dashboard) -> None:
    client = dashboard.signed_in(dashboard.acme)
    for token in (None, "wrong-token"):
        data = {"name": "csrf-probe", "kind": "icmp", "target": "127.9.9.9"}
        if token:
            data["csrf"] = token
        response = client.post("/devices", data=data)
        assert response.status_code == 403 and "Reload the page" in text(response)
    assert not sql(dashboard.database_url, "SELECT 1 FROM devices WHERE name = 'csrf-probe'")
    # The htmx header form is accepted too.
    csrf = csrf_of(client.get("/devices/new").text)
    ok = client.post("/devices", data={"name": "csrf-probe", "kind": "icmp", "target": "127.9.9.9"},
                     headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200


def test_add_one_device_shows_its_token_once_and_notifies_the_worker(dashboard) -> None:
    client = dashboard.signed_in(dashboard.acme)
    csrf = csrf_of(client.get("/devices/new").text)
    version = redis_sync.Redis.from_url(dashboard.redis_url)
    before = int(version.get(DEVICES_VERSION_KEY) or 0)
    bad = client.post("/devices", data={"csrf": csrf, "name": "push-1", "kind": "http", "target": "not a url"})
    assert bad.status_code == 422
    assert "target: 'not a url' is not an http(s) URL" in text(bad)
    assert 'value="push-1"' in bad.text, "the form keeps what was typed"
    response = client.post("/devices", data={"csrf": csrf, "name": "push-1", "kind": "push", "target": "",
                                             "interval_s": "30", "enabled_field": "1", "enabled": "on"})
    assert response.status_code == 200
    token = re.search(r"push-1,(\d+),(iotd_[\w-]+)", response.text)
    assert token, response.text
    row = sql(dashboard.database_url, "SELECT kind, interval_s, grace_s, enabled FROM devices WHERE id = $1",
              int(token.group(1)))
    assert tuple(row[0]) == ("push", 30, 90, True)
    assert int(version.get(DEVICES_VERSION_KEY)) == before + 1
    version.close()


def test_csv_import_reports_problems_by_line_and_is_all_or_nothing(dashboard) -> None:
    client = dashboard.signed_in(dashboard.acme)
    csrf = csrf_of(client.get("/devices/new").text)
    broken = "name,kind,target,interval_s\ncsv-a,http,http://127.0.0.1/,30\ncsv-b,tcp,127.0.0.2,30\n"
    response = client.post("/devices/import", data={"csrf": csrf, "csv_text": broken})
    assert response.status_code == 422
    assert "line 3: target: '127.0.0.2' is not host:port" in text(response)
    assert not sql(dashboard.database_url, "SELECT 1 FROM devices WHERE name LIKE 'csv-%'")
    bad_header = client.post("/devices/import", data={"csrf": csrf, "csv_text": "name,type\nx,http\n"})
    assert "missing column(s) kind; unknown column(s) type" in text(bad_header)
    good = "name,kind,target,interval_s\ncsv-a,http,http://127.0.0.1/,30\ncsv-b,tcp,127.0.0.2:22,30\ncsv-c,icmp,127.0.0.3,\n"
    uploaded = client.post("/devices/import", data={"csrf": csrf, "csv_text": ""},
                           files={"csv_file": ("fleet.csv", good.encode(), "text/csv")})
    assert uploaded.status_code == 200
    assert "3 devices added" in uploaded.text
    rows = sql(dashboard.database_url, "SELECT name, kind, interval_s FROM devices WHERE name LIKE 'csv-%' ORDER BY name")
    assert [tuple(r) for r in rows] == [("csv-a", "http", 30), ("csv-b", "tcp", 30), ("csv-c", "icmp", 60)]


def test_edit_and_delete_a_device(dashboard) -> None:
    (device_id,) = create_devices(dashboard.database_url, dashboard.acme,
                                  [DeviceSpec("edit-me", "http", "http://127.1.1.1/")])
    client = dashboard.signed_in(dashboard.acme)
    form = client.get(f"/devices/{device_id}/edit")
    assert 'value="edit-me"' in form.text
    csrf = csrf_of(form.text)
    bad = client.post(f"/devices/{device_id}", data={"csrf": csrf, "name": "edit-me", "kind": "http",
                                                     "target": "http://127.1.1.1/", "timeout_ms": "abc"})
    assert bad.status_code == 422 and "timeout_ms: must be a whole number" in text(bad)
    saved = client.post(f"/devices/{device_id}", data={
        "csrf": csrf, "name": "edited", "kind": "tcp", "target": "127.1.1.1:502", "interval_s": "20",
        "timeout_ms": "1500", "grace_s": "", "parent_id": "", "enabled_field": "1"})
    assert saved.status_code == 303 and saved.headers["location"] == f"/devices/{device_id}"
    row = sql(dashboard.database_url, "SELECT name, kind, target, interval_s, timeout_ms, enabled FROM devices WHERE id = $1",
              device_id)
    assert tuple(row[0]) == ("edited", "tcp", "127.1.1.1:502", 20, 1500, False)
    page = client.get(f"/devices/{device_id}")
    assert "edited" in page.text and "paused" in page.text
    assert client.get(f"/devices/{device_id}/delete").status_code == 200
    gone = client.post(f"/devices/{device_id}/delete", data={"csrf": csrf})
    assert gone.status_code == 303 and gone.headers["location"] == "/devices"
    assert client.get(f"/devices/{device_id}").status_code == 404


def test_device_list_pages_filters_and_sorts_on_the_server(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "listing")
    ids = create_devices(dashboard.database_url, tenant,
                         [DeviceSpec(f"node-{i:03d}", "http", f"http://127.2.0.{i % 250}/") for i in range(120)])
    # Play the worker: states and latencies per region.
    sql(dashboard.database_url, "UPDATE devices SET state = 'up' WHERE id = ANY($1)", ids)
    sql(dashboard.database_url, "UPDATE devices SET state = 'down' WHERE id = ANY($1)", ids[5:8])
    sql(dashboard.database_url, """
        INSERT INTO device_region_state (device_id, region, state, last_ok, last_latency_ms)
        SELECT id, region, 'up', true, (id % 97) + CASE region WHEN 'frankfurt' THEN 0 ELSE 10 END
        FROM devices, unnest(ARRAY['frankfurt', 'amsterdam']) AS region WHERE id = ANY($1)""", ids)
    sql(dashboard.database_url, "UPDATE device_region_state SET state = 'down', last_ok = false "
        "WHERE device_id = $1 AND region = 'amsterdam'", ids[10])
    client = dashboard.signed_in(tenant)

    def names(response: httpx.Response) -> list[str]:
        return re.findall(r'data-device="([^"]+)"', response.text)

    first = client.get("/devices")
    assert "120 devices · page 1 of 3" in first.text
    assert names(first) == [f"node-{i:03d}" for i in range(50)]
    last = client.get("/devices?page=3")
    assert names(last) == [f"node-{i:03d}" for i in range(100, 120)]
    assert names(client.get("/devices?state=down")) == ["node-005", "node-006", "node-007"]
    assert names(client.get("/devices?q=node-11")) == [f"node-{i}" for i in range(110, 120)]
    # With a region, the state filter is that region's view.
    assert names(client.get("/devices?region=amsterdam&state=down")) == ["node-010"]
    by_state = names(client.get("/devices?sort=state"))
    assert by_state[:3] == ["node-005", "node-006", "node-007"], "worst state first"
    latencies = [float(v) for v in re.findall(r"<td data-label=\"Latency\">([\d.]+) ms</td>", client.get("/devices?sort=latency&dir=desc").text)]
    assert len(latencies) == 50 and latencies == sorted(latencies, reverse=True)
    # The polled fragment carries the same filters.
    fragment = client.get("/fragments/devices?state=down")
    assert names(fragment) == ["node-005", "node-006", "node-007"]
    assert 'hx-get="/fragments/devices?state=down&amp;sort=name&amp;dir=asc&amp;page=1"' in fragment.text
    assert 'hx-trigger="every 2s"' in fragment.text


def test_overview_counts_regions_and_incidents(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "overview")
    ids = create_devices(dashboard.database_url, tenant,
                         [DeviceSpec(f"ov-{i}", "icmp", f"127.3.0.{i}") for i in range(1, 6)])
    sql(dashboard.database_url, "UPDATE devices SET state = 'up' WHERE id = ANY($1)", ids[:3])
    sql(dashboard.database_url, "UPDATE devices SET state = 'down' WHERE id = $1", ids[3])
    sql(dashboard.database_url, "INSERT INTO incidents (tenant_id, device_id, kind, summary) "
        "VALUES ($1, $2, 'down', 'ov-4 failed from 2 of 2 regions')", tenant.id, ids[3])
    sql(dashboard.database_url, "INSERT INTO regions (name, healthy, last_heartbeat_at) VALUES "
        "('frankfurt', true, now()), ('amsterdam', false, now() - interval '1 minute') ON CONFLICT (name) DO UPDATE "
        "SET healthy = excluded.healthy, last_heartbeat_at = excluded.last_heartbeat_at")
    sql(dashboard.database_url, "UPDATE regions SET reason = 'canaries failing' WHERE name = 'amsterdam'")
    heartbeats = redis_sync.Redis.from_url(dashboard.redis_url)
    heartbeats.zadd(MONITOR_HEARTBEATS_KEY, {"frankfurt/mon-1": datetime.now(UTC).timestamp()})
    heartbeats.close()
    client = dashboard.signed_in(tenant)
    page = client.get("/")
    counts = dict(re.findall(r'data-count="(\w+)">\s*<span class="n">(\d+)</span>', page.text))
    assert counts == {"down": "1", "degraded": "0", "unknown": "1", "up": "3"}
    body = text(page)
    assert "ov-4 failed from 2 of 2 regions" in body
    regions = re.findall(r"<tr>\s*<td>(\w+)</td>\s*<td>.*?>(healthy|unhealthy|no monitor)<", page.text, re.S)
    assert regions == [("amsterdam", "unhealthy"), ("frankfurt", "healthy")]
    assert "canaries failing" in body
    assert 'hx-get="/fragments/overview" hx-trigger="every 2s"' in page.text


def test_device_detail_draws_a_latency_chart_per_region_from_rollups(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "charts")
    (device_id,) = create_devices(dashboard.database_url, tenant, [DeviceSpec("chart-me", "http", "http://127.4.0.1/")])
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    sql(dashboard.database_url, """
        INSERT INTO rollups (device_id, region, minute, checks, failures, latency_p50, latency_p95, latency_max)
        SELECT $1, region, $2::timestamptz - make_interval(mins => m), 4, CASE WHEN m = 5 THEN 2 ELSE 0 END,
               20 + m + CASE region WHEN 'frankfurt' THEN 0 ELSE 30 END, 40 + m, 50 + m
        FROM generate_series(0, 200) AS m, unnest(ARRAY['frankfurt', 'amsterdam']) AS region""", device_id, now)
    sql(dashboard.database_url, "INSERT INTO device_region_state (device_id, region, state, last_ok, last_latency_ms) "
        "VALUES ($1, 'frankfurt', 'up', true, 21), ($1, 'amsterdam', 'up', true, 51)", device_id)
    client = dashboard.signed_in(tenant)
    page = client.get(f"/devices/{device_id}")
    assert page.status_code == 200
    series = re.findall(r'<polyline class="series" data-region="(\w+)" points="([^"]+)"', page.text)
    assert sorted(r for r, _ in series) == ["amsterdam", "frankfurt"]
    for _, points in series:
        assert 55 <= len(points.split()) <= 61, "one point per minute of the last hour"
    # Each drawn minute holds 4 checks (the window may have moved by a minute since the insert).
    points = len(dict(series)["amsterdam"].split())
    assert f"amsterdam: {4 * points} checks, 2 failed" in page.text
    assert len(re.findall(r'<rect class="failure"', page.text)) == 1
    day = client.get(f"/devices/{device_id}?window=day")
    day_series = re.findall(r'<polyline class="series" data-region="(\w+)" points="([^"]+)"', day.text)
    assert all(len(p.split()) <= 22 for _, p in day_series), "10-minute buckets over 200 minutes"
    fragment = client.get(f"/fragments/devices/{device_id}/chart?window=hour")
    assert fragment.text.lstrip().startswith('<div id="chart"') and "<svg" in fragment.text
    # The last hour of a device without rollups says so instead of drawing an empty frame silently.
    (empty_id,) = create_devices(dashboard.database_url, tenant, [DeviceSpec("no-data", "icmp", "127.4.0.2")])
    assert "No checks in the last hour yet." in client.get(f"/devices/{empty_id}").text


def test_settings_save_the_webhook_and_rotate_the_api_key(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "settings")
    client = dashboard.signed_in(tenant)
    csrf = csrf_of(client.get("/settings").text)
    bad = client.post("/settings/webhook", data={"csrf": csrf, "webhook_url": "ftp://x", "webhook_secret": ""})
    assert bad.status_code == 422 and "webhook url: 'ftp://x' is not an http(s) URL" in text(bad)
    saved = client.post("/settings/webhook", data={"csrf": csrf, "webhook_url": "https://hooks.example/iot",
                                                   "webhook_secret": ""})
    assert "Webhook saved." in saved.text
    row = sql(dashboard.database_url, "SELECT webhook_url, webhook_secret FROM tenants WHERE id = $1", tenant.id)[0]
    assert row["webhook_url"] == "https://hooks.example/iot" and len(row["webhook_secret"]) >= 16
    assert f'value="{row["webhook_secret"]}"' in saved.text
    other_browser = dashboard.signed_in(tenant)
    assert other_browser.get("/settings").status_code == 200
    rotated = client.post("/settings/api-key", data={"csrf": csrf})
    new_key = re.search(r'id="new-api-key">(iotk_[\w-]+)<', rotated.text).group(1)
    # The rotating browser stays signed in (new cookie, new CSRF token); sessions of the old key end.
    assert client.get("/settings").status_code == 200
    assert csrf_of(rotated.text) != csrf
    assert other_browser.get("/settings").status_code == 303
    with dashboard.client(tenant) as fresh:
        assert fresh.post("/signin", data={"api_key": tenant.api_key}).status_code == 401
        assert fresh.post("/signin", data={"api_key": new_key}).status_code == 303


def test_everything_is_served_by_the_app_itself(dashboard) -> None:
    client = dashboard.signed_in(dashboard.acme)
    page = client.get("/")
    assert not re.search(r'(src|href)="(https?:)?//', page.text), "no CDN or external asset"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    htmx = client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and "Zero-Clause BSD" in htmx.text[:400] and "htmx" in htmx.text
    assert client.get("/static/app.css").status_code == 200


def test_polled_fragment_after_sign_out_redirects_the_whole_page(dashboard) -> None:
    with dashboard.client(dashboard.acme) as client:
        response = client.get("/fragments/overview", headers={"HX-Request": "true"})
        assert response.status_code == 401 and response.headers["hx-redirect"] == "/signin"


def test_health_needs_no_tenant(dashboard) -> None:
    assert httpx.get(f"{dashboard.url}/health").json()["status"] == "ok"
