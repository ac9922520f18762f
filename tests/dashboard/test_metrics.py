"""Metrics in the dashboard: charts per metric on the device page (hour / day / 30 days), latest values as chosen
columns of the device list, no latency fields on push devices, and the metric rules page (add, refuse with the
reason, pause, delete; another tenant's rules are out of reach). Points go in through the real ingest writer."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from dashboard.harness import ROOT, create_devices, csrf_of, new_tenant, run, sql
from iot.db import create_pool
from iot.repo.devices import DeviceSpec
from iot.tracker.ingest import MetricWriter

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"


async def _ingest(database_url: str, device_id: int, points: list[tuple[datetime, str, float]]) -> None:
    pool = await create_pool(database_url)
    writer = MetricWriter(pool)
    writer.start()
    try:
        await writer.write(device_id, points, max(p[0] for p in points))
    finally:
        await writer.stop()
        await pool.close()


def _fridge_points(now: datetime) -> list[tuple[datetime, str, float]]:
    points = [(now - timedelta(minutes=m), "temperature", 4.0 + (m % 7) * 0.5) for m in range(0, 60)]
    points += [(now - timedelta(hours=h), "temperature", 3.0 + h % 5) for h in range(2, 24 * 20, 3)]
    points += [(now - timedelta(minutes=m), "battery", 90.0 - m / 10) for m in range(0, 60, 5)]
    return points


def _metric_charts(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('<figure class="metric-chart" data-metric="')[1:]]


def test_device_page_charts_each_metric_and_push_devices_show_no_latency(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "metrics-page")
    fridge, pinger = create_devices(dashboard.database_url, tenant, [
        DeviceSpec("fridge-1", "push", None), DeviceSpec("pinger", "icmp", "127.3.0.1")])
    now = datetime.now(UTC)
    run(_ingest(dashboard.database_url, fridge, _fridge_points(now)))
    client = dashboard.signed_in(tenant)

    page = html.unescape(client.get(f"/devices/{fridge}").text)
    assert _metric_charts(page) == ["battery", "temperature"]
    assert page.count('class="series" data-metric="temperature"') >= 1
    assert "Response time per region" not in page and "timeout" not in page and "Baseline" not in page
    assert "Last heard from" in page
    for window, label in (("day", "last day"), ("month", "last 30 days")):
        shown = html.unescape(client.get(f"/devices/{fridge}?metric_window={window}").text)
        assert f'aria-label="temperature of fridge-1 over the {label}"' in shown
        assert 'class="series" data-metric="temperature"' in shown
    # the month view draws the points of 20 days ago: its x axis spans 30 days
    month = client.get(f"/fragments/devices/{fridge}/metrics?metric_window=month")
    assert month.status_code == 200 and "last 30 days" in month.text

    checked = html.unescape(client.get(f"/devices/{pinger}").text)
    assert "Response time per region" in checked and "timeout" in checked
    assert "has not pushed any metrics yet" in checked

    # another tenant's device: 404, no hint of it
    other = dashboard.signed_in(dashboard.beta)
    assert other.get(f"/devices/{fridge}").status_code == 404
    assert other.get(f"/fragments/devices/{fridge}/metrics").status_code == 404


def test_device_list_shows_chosen_metric_columns(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "metrics-list")
    fridge, plain = create_devices(dashboard.database_url, tenant, [
        DeviceSpec("fridge-1", "push", None), DeviceSpec("plain", "push", None)])
    run(_ingest(dashboard.database_url, fridge, [(datetime.now(UTC), "temperature", 5.5),
                                                 (datetime.now(UTC), "battery", 71.0)]))
    client = dashboard.signed_in(tenant)
    page = client.get("/devices?metrics=temperature,%20battery,%00bad").text
    assert '<th class="metric" data-metric="temperature">' in page and 'data-metric="battery"' in page
    assert "bad" not in page.split("<tbody>")[0].split("Metric columns")[-1].split("</label>")[1]
    row = page.split(f'id="device-{fridge}"')[1].split("</tr>")[0]
    assert ">5.5</span>" in row and ">71</span>" in row
    other_row = page.split(f'id="device-{plain}"')[1].split("</tr>")[0]
    assert "</span></td>" not in other_row.split('data-metric="temperature">')[1].split("<td")[0]
    # no metrics chosen: no metric columns
    assert 'class="metric"' not in client.get("/devices").text


def test_rules_page_adds_refuses_pauses_and_deletes(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "metrics-rules")
    (fridge,) = create_devices(dashboard.database_url, tenant, [DeviceSpec("fridge-1", "push", None)])
    client = dashboard.signed_in(tenant)
    rules = client.get("/rules")
    assert rules.status_code == 200 and "No rules yet" in rules.text
    csrf = csrf_of(rules.text)

    added = client.post("/rules", data={"csrf": csrf, "metric": "temperature", "kind": "threshold",
                                        "operator": ">", "threshold": "8", "for_min": "5", "device": "fridge-1"})
    assert added.status_code == 303
    client.post("/rules", data={"csrf": csrf, "metric": "battery", "kind": "threshold", "operator": "<",
                                "threshold": "15", "tag": "fleet"})
    page = html.unescape(client.get("/rules").text)
    assert "temperature > 8 for 5 min" in page and "battery < 15" in page
    assert f'href="/devices/{fridge}">fridge-1</a>' in page and "devices tagged" in page
    assert "temperature > 8 for 5 min" in html.unescape(client.get(f"/devices/{fridge}").text)

    for data, reason in (
        ({"metric": "t", "operator": ">", "threshold": "8"}, "device: give a device name or a tag"),
            ({"metric": "t", "operator": ">", "threshold": "8", "tag": "a", "device": "fridge-1"}, "exactly one"),
        ({"metric": "t", "operator": ">", "threshold": "x", "tag": "a"}, "threshold: must be a number"),
        ({"metric": "t", "operator": ">", "threshold": "1", "for_min": "nan", "tag": "a"}, "for_min: must be a number"),
        ({"metric": "t", "operator": ">", "threshold": "1", "device": "nope"}, "device: no device named 'nope'"),
        ({"metric": "t", "kind": "anomaly", "tag": "a"}, "z_score: required for an anomaly rule"),
    ):
        refused = client.post("/rules", data={"csrf": csrf, **data})
        assert refused.status_code == 422 and reason in html.unescape(refused.text), (data, refused.text[:300])
    assert len(sql(dashboard.database_url, "SELECT id FROM metric_rules WHERE tenant_id = $1", tenant.id)) == 2
    # a form without the CSRF token changes nothing
    assert client.post("/rules", data={"metric": "t", "operator": ">", "threshold": "1", "tag": "a"}).status_code == 403

    rule_id = sql(dashboard.database_url, "SELECT id FROM metric_rules WHERE tenant_id = $1 AND metric = 'temperature'",
                  tenant.id)[0]["id"]
    # another tenant can neither pause nor delete it
    other = dashboard.signed_in(dashboard.beta)
    other_csrf = csrf_of(other.get("/rules").text)
    assert other.post(f"/rules/{rule_id}/enabled", data={"csrf": other_csrf, "enabled": "false"}).status_code == 404
    assert other.post(f"/rules/{rule_id}/delete", data={"csrf": other_csrf}).status_code == 404
    assert "No rules yet" in other.get("/rules").text and "data-rule=" not in other.get("/rules").text

    assert client.post(f"/rules/{rule_id}/enabled", data={"csrf": csrf, "enabled": "false"}).status_code == 303
    row = client.get("/rules").text.split(f'data-rule="{rule_id}"')[1].split("</tr>")[0]
    assert "<td>paused</td>" in row and "Resume" in row
    assert client.post(f"/rules/{rule_id}/delete", data={"csrf": csrf}).status_code == 303
    assert f'data-rule="{rule_id}"' not in client.get("/rules").text
    assert client.get("/rules").text.count("data-rule=") == 1


@pytest.mark.browser
@pytest.mark.parametrize("width", [1440, 390])
def test_device_page_with_metric_charts_in_chromium(dashboard, width: int) -> None:
    tenant = new_tenant(dashboard.database_url, f"metrics-browser-{width}")
    (fridge,) = create_devices(dashboard.database_url, tenant, [DeviceSpec("fridge-1", "push", None)])
    run(_ingest(dashboard.database_url, fridge, _fridge_points(datetime.now(UTC))))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = f"http://{tenant.host}:{dashboard.port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(f"{base}/signin")
            page.fill("#api_key", tenant.api_key)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base}/")
            page.goto(f"{base}/devices/{fridge}")
            expect(page.locator("h1")).to_have_text("fridge-1")
            charts = page.locator("figure.metric-chart")
            expect(charts).to_have_count(2)
            expect(page.locator('figure[data-metric="temperature"] polyline.series').first).to_be_visible()
            expect(page.locator('figure[data-metric="battery"] .latest')).to_have_text("90")
            expect(page.locator("text=Response time per region")).to_have_count(0)
            # nothing wider than the screen: no horizontal scrolling of the page
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            wide = page.evaluate("""[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).slice(0, 8).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))""")
            assert overflow <= 0, f"page is {overflow} px wider than the {width} px viewport: {wide}"
            box = charts.first.bounding_box()
            assert box is not None and box["width"] <= width and box["height"] > 80
            page.screenshot(path=str(Path(ARTIFACTS, f"metrics-device-{width}.png")), full_page=True)

            page.click("text=last 30 days")
            expect(page.locator('figure[data-metric="temperature"] svg')).to_have_attribute(
                "aria-label", "temperature of fridge-1 over the last 30 days")
            page.screenshot(path=str(Path(ARTIFACTS, f"metrics-device-month-{width}.png")), full_page=True)
            # the add form shows a push device's fields only: no timeout; grace only for push
            page.goto(f"{base}/devices/new")
            form = page.locator("form").filter(has=page.locator('select[name="kind"]')).first
            form.locator('select[name="kind"]').select_option("push")
            expect(form.locator('input[name="timeout_ms"]')).to_be_hidden()
            expect(form.locator('input[name="grace_s"]')).to_be_visible()
            form.locator('select[name="kind"]').select_option("http")
            expect(form.locator('input[name="timeout_ms"]')).to_be_visible()
            expect(form.locator('input[name="grace_s"]')).to_be_hidden()
            page.goto(f"{base}/rules")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"rules page is {overflow} px wider than the {width} px viewport"
            page.screenshot(path=str(Path(ARTIFACTS, f"metrics-rules-{width}.png")), full_page=True)
        finally:
            browser.close()


def test_metric_chart_axis_covers_negative_values_and_joins_sparse_points() -> None:
    from iot.dashboard.charts import WINDOWS, metric_chart

    end = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    # a freezer at -18..-21, one point every 5 minutes
    points = [(end - timedelta(minutes=m), -18.0 - m % 4, 1) for m in range(0, 60, 5)]
    chart = metric_chart(points, "temperature", WINDOWS["hour"], end)
    labels = [label for _, label in chart.y_ticks]
    assert labels[0] == "-50" and labels[-1] == "0"  # the axis goes below zero, labels carry no "ms"
    x0, y0, x1, y1 = chart.plot
    (series,) = chart.series
    assert len(series.paths) == 1, "points 5 minutes apart form one line, not twelve dots"
    for pair in series.paths[0].split():
        y = float(pair.split(",")[1])
        assert y0 <= y <= y1


def test_hostile_metric_names_are_escaped_everywhere(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "metrics-hostile")
    (device,) = create_devices(dashboard.database_url, tenant, [DeviceSpec("d", "push", None)])
    evil = '"><script>alert(1)</script>'
    run(_ingest(dashboard.database_url, device, [(datetime.now(UTC), evil, 1.0)]))
    client = dashboard.signed_in(tenant)
    csrf = csrf_of(client.get("/rules").text)
    assert client.post("/rules", data={"csrf": csrf, "metric": evil, "operator": ">", "threshold": "1",
                                       "device": "d"}).status_code == 303
    for path in (f"/devices/{device}", f"/fragments/devices/{device}/metrics", "/rules",
                 "/devices?metrics=" + evil.replace("<", "%3C").replace(">", "%3E").replace('"', "%22")):
        page = client.get(path)
        assert page.status_code == 200 and "<script>alert(1)" not in page.text, path
        assert "&lt;script&gt;" in page.text, path
