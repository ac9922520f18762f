"""Uptime and history on the dashboard (issue 14): the device page's 24h/7d/30d/90d uptime, 90 daily bars
and SLA breach from a scripted state timeline, the response-time chart over the long ranges (hourly
rollups), the SLA target form with its 4xx, another tenant's device refused; and the device page with
30-day uptime in real Chromium, screenshots at 1440 px and 390 px (test-artifacts/dashboard/)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from dashboard.harness import ROOT, create_devices, csrf_of, new_tenant, sql
from iot.repo.devices import DeviceSpec

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
H = timedelta(hours=1)


def _scripted_device(dashboard, tenant, name: str) -> tuple[int, datetime]:
    """Up for 40 days, except 2 h down 10 days ago and 30 min down 2 days ago; 99.5 % SLA target."""
    (device,) = create_devices(dashboard.database_url, tenant, [DeviceSpec(name=name, kind="http",
                                                                           target="http://127.0.0.1:9/")])
    now = datetime.now(UTC).replace(microsecond=0)
    script = [(now - timedelta(days=40), "up"),
              (now - timedelta(days=10), "down"), (now - timedelta(days=10) + 2 * H, "up"),
              (now - timedelta(days=2), "down"), (now - timedelta(days=2, minutes=-30), "up")]
    for at, state in script:
        sql(dashboard.database_url, "UPDATE devices SET state = $2, state_since = $3 WHERE id = $1", device, state, at)
    sql(dashboard.database_url, "UPDATE devices SET sla_target = 99.5 WHERE id = $1", device)
    sql(dashboard.database_url, "INSERT INTO rollups_hourly (device_id, region, hour, checks, failures, latency_p50, "
        "latency_p95, latency_max) SELECT $1, 'frankfurt', date_trunc('hour', $2::timestamptz) - n * interval '6 hours', "
        "360, 0, 40 + n % 7 * 5, 80 + n % 7 * 10, 120 + n % 7 * 15 FROM generate_series(4, 112) n", device, now)
    return device, now


def _figure(page_text: str, range_name: str) -> str:
    match = re.search(rf'data-range="{range_name}">\s*<dt>{range_name}</dt>\s*<dd class="percent">([^<]+)<', page_text)
    assert match, f"no {range_name} figure"
    return match.group(1).strip()


def test_device_page_shows_uptime_per_range_bars_and_breach(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "uptime-acme")
    device, _ = _scripted_device(dashboard, tenant, "pump-1")
    client = dashboard.signed_in(tenant)
    page = html.unescape(client.get(f"/devices/{device}").text)
    chart = html.unescape(client.get(f"/devices/{device}?window=30d").text)
    assert _figure(page, "24h") == "100.00 %"
    assert _figure(page, "7d") == f"{100 * (7 * 86400 - 1800) / (7 * 86400):.2f} %"  # 99.70: above 99.5
    assert _figure(page, "30d") == f"{100 * (30 * 86400 - 9000) / (30 * 86400):.2f} %"  # 99.65
    # 90 days, but the device was watched for 40: the figure covers those 40
    assert _figure(page, "90d") == f"{100 * (40 * 86400 - 9000) / (40 * 86400):.2f} %"
    assert page.count('class="bar ') == 90
    assert page.count('class="bar none"') == 90 - 41  # the days before the device was watched (and one partial)
    assert len(re.findall(r'class="bar (?:warn|bad)"', page)) == 2  # the two outage days
    assert "SLA target 99.5 %" in page
    assert "below SLA" not in page  # 99.65 and 99.70 are above 99.5
    assert "2 h 30 min down" in page  # 30d: 2 h + 30 min
    # the 30d response-time chart is drawn from the hourly rollups
    assert chart.count('polyline class="series" data-region="frankfurt"') >= 1
    assert 'aria-current="page">30d' in chart


def test_sla_form_sets_breach_refuses_bad_input_and_other_tenants(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "uptime-sla")
    device, _ = _scripted_device(dashboard, tenant, "pump-2")
    client, beta = dashboard.signed_in(tenant), dashboard.signed_in(dashboard.beta)
    edit = client.get(f"/devices/{device}/edit").text
    assert 'name="sla_target"' in edit and 'value="99.5"' in edit
    csrf = csrf_of(edit)
    saved = client.post(f"/devices/{device}/sla", data={"csrf": csrf, "sla_target": "99.9 %"})
    page = html.unescape(client.get(f"/devices/{device}").text)
    bad = client.post(f"/devices/{device}/sla", data={"csrf": csrf, "sla_target": "lots"})
    over = client.post(f"/devices/{device}/sla", data={"csrf": csrf, "sla_target": "101"})
    foreign = beta.post(f"/devices/{device}/sla", data={"csrf": csrf_of(beta.get("/devices").text),
                                                        "sla_target": "50"})
    cleared = client.post(f"/devices/{device}/sla", data={"csrf": csrf, "sla_target": ""})
    after = html.unescape(client.get(f"/devices/{device}").text)
    assert saved.status_code == 303 and saved.headers["location"] == f"/devices/{device}"
    assert "SLA target 99.9 %" in page
    assert page.count("below SLA") == 3  # 7d 99.70, 30d 99.65, 90d 99.77 are under 99.9; 24h is not
    assert bad.status_code == 422 and "sla_target: 'lots' is not a number" in html.unescape(bad.text)
    assert over.status_code == 422 and "at most 100" in over.text
    assert foreign.status_code == 404
    assert cleared.status_code == 303 and "No SLA target" in after and "below SLA" not in after
    assert sql(dashboard.database_url, "SELECT sla_target FROM devices WHERE id = $1", device)[0]["sla_target"] is None


@pytest.fixture
def browser_page() -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


@pytest.fixture
def scripted(dashboard):
    """Set up before the browser starts: playwright's sync API holds an event loop, the SQL helpers need one."""
    tenant = new_tenant(dashboard.database_url, "uptime-browser")
    device, _ = _scripted_device(dashboard, tenant, "pump-browser")
    return tenant, device


@pytest.mark.browser
def test_device_page_with_30_day_uptime_in_chromium_at_1440_and_390_px(dashboard, scripted, browser_page: Page) -> None:
    tenant, device = scripted
    page = browser_page
    base = f"http://{tenant.host}:{dashboard.port}"
    page.goto(f"{base}/signin")
    page.fill("#api_key", tenant.api_key)
    page.click("button[type=submit]")
    page.goto(f"{base}/devices/{device}?window=30d")
    expect(page.locator('[data-range="30d"] .percent')).to_have_text("99.65 %")
    expect(page.locator(".uptime-bars .bar")).to_have_count(90)
    expect(page.locator("svg.chart polyline.series")).not_to_have_count(0)
    bars = page.locator(".uptime-bars").bounding_box()
    assert bars is not None and bars["width"] > 600
    page.screenshot(path=str(ARTIFACTS / "uptime-device-1440.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator('[data-range="30d"] .percent')).to_have_text("99.65 %")
    # readable on a phone: the uptime card and the chart fit the screen, the 90 bars all inside it
    # (the site's top navigation, base.html, is not part of this page's content)
    wide = page.evaluate("""[...document.querySelectorAll('#uptime, #uptime *, #chart, #chart *')]
                            .filter(e => e.getBoundingClientRect().right > 390)
                            .map(e => e.tagName + '.' + e.className.baseVal ?? e.className)""")
    assert wide == []
    bars = page.locator(".uptime-bars").bounding_box()
    assert bars is not None and bars["x"] >= 0 and bars["x"] + bars["width"] <= 390
    last = page.locator(".uptime-bars .bar").last.bounding_box()
    assert last is not None and last["x"] + last["width"] <= 390
    page.screenshot(path=str(ARTIFACTS / "uptime-device-390.png"), full_page=True)
