"""Dashboard pages of issue 14: incidents (list, filters, detail timeline, acknowledge and note forms),
maintenance (list, one-off and recurring form), and the device page's maintenance windows. Over HTTP
for the rules (CSRF, validation, isolation), and in real headless Chromium with screenshots at 1440 px
and 390 px (test-artifacts/dashboard/, gitignored)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from dashboard.harness import ROOT, create_devices, csrf_of, new_tenant, sql
from iot.repo.devices import DeviceSpec

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"


def _incident(database_url: str, tenant_id: int, device_id: int, kind: str, summary: str,
              resolved: bool = False) -> int:
    (row,) = sql(database_url, "INSERT INTO incidents (tenant_id, device_id, kind, summary, opened_at, resolved_at) "
                 "VALUES ($1, $2, $3, $4, now() - interval '20 minutes', "
                 "CASE WHEN $5 THEN now() - interval '5 minutes' END) RETURNING id",
                 tenant_id, device_id, kind, summary, resolved)
    sql(database_url, "INSERT INTO incident_events (tenant_id, incident_id, at, kind, text) "
        "VALUES ($1, $2, now() - interval '21 minutes', 'suppressed', 'alert held back by maintenance window 7 "
        "(Firmware upgrade)'), ($1, $2, now() - interval '20 minutes', 'opened', $3)", tenant_id, row["id"], summary)
    return row["id"]


def _fleet(dashboard, slug: str):
    tenant = new_tenant(dashboard.database_url, slug)
    ids = create_devices(dashboard.database_url, tenant, [
        DeviceSpec("gateway-berlin", "icmp", "127.3.1.1", tags=["site/berlin"]),
        DeviceSpec("pump-7", "icmp", "127.3.1.2", tags=["site/berlin"]),
        DeviceSpec("meter-2", "icmp", "127.3.1.3")])
    sql(dashboard.database_url, "UPDATE devices SET parent_id = $1 WHERE id = $2", ids[0], ids[1])
    sql(dashboard.database_url, "UPDATE devices SET state = 'down' WHERE id = ANY($1::bigint[])", ids[:2])
    down = _incident(dashboard.database_url, tenant.id, ids[0], "down",
                     "gateway-berlin is down: failing from frankfurt, amsterdam (timeout)")
    slow = _incident(dashboard.database_url, tenant.id, ids[2], "degraded", "meter-2 is slow: 900 ms", resolved=True)
    payload = {"device": {"id": ids[0], "name": "gateway-berlin"}, "state": "down"}  # the pool's codec encodes it
    sql(dashboard.database_url, "INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload, status, "
        "attempts, last_status_code, created_at, delivered_at) VALUES ($1, $2, 'device.state_changed', $3::jsonb, "
        "'delivered', 1, 200, now() - interval '19 minutes', now())", tenant.id, f"ev-{ids[0]}", payload)
    return tenant, ids, down, slow


def test_incidents_list_filters_and_the_timeline_forms(dashboard) -> None:
    tenant, ids, down, slow = _fleet(dashboard, "incpages")
    client = dashboard.signed_in(tenant)
    listed = client.get("/incidents")
    assert listed.status_code == 200
    assert [int(i) for i in re.findall(r'<td><a href="/incidents/(\d+)">\d+</a></td>', listed.text)] == [slow, down]
    only_open = client.get("/incidents", params={"status": "open"}).text
    assert "gateway-berlin is down" in only_open and "meter-2 is slow" not in only_open
    by_kind = client.get("/incidents", params={"kind": "degraded"}).text
    assert "meter-2 is slow" in by_kind and "gateway-berlin is down" not in by_kind
    by_device = client.get("/incidents", params={"device_id": ids[2]}).text
    assert "meter-2 is slow" in by_device and "gateway-berlin" not in by_device

    page = client.get(f"/incidents/{down}")
    assert page.status_code == 200
    timeline = re.findall(r'<li class="event event-(\w+)">', page.text)
    assert timeline == ["suppressed", "opened", "notified"]
    assert "webhook device.state_changed (down)" in page.text and "delivered (HTTP 200)" in page.text
    assert 'id="suppressed-children"' in page.text and ">pump-7</a>" in page.text
    # a form without the session's CSRF token changes nothing
    assert client.post(f"/incidents/{down}/ack", data={"actor": "eve"}).status_code == 403
    csrf = csrf_of(page.text)
    acked = client.post(f"/incidents/{down}/ack", data={"csrf": csrf, "actor": "Alice"})
    assert acked.status_code == 303
    refused = client.post(f"/incidents/{down}/notes", data={"csrf": csrf, "actor": "Bob", "text": "   "})
    assert refused.status_code == 422 and "text: must be 1-2000 characters" in refused.text
    assert client.post(f"/incidents/{down}/notes", data={"csrf": csrf, "actor": "Bob", "text": "On site"}
                       ).status_code == 303
    page = client.get(f"/incidents/{down}").text
    assert re.findall(r'<li class="event event-(\w+)">', page) == ["suppressed", "opened", "notified",
                                                                   "acknowledged", "note"]
    assert "by Alice" in page and "by Bob" in page and "On site" in page and 'id="ack-form"' not in page
    again = client.post(f"/incidents/{down}/ack", data={"csrf": csrf, "actor": "Carol"})
    assert again.status_code == 409 and "already acknowledged by Alice" in again.text


def test_another_tenants_incident_is_not_found(dashboard) -> None:
    _, _, down, _ = _fleet(dashboard, "incowner")
    other = dashboard.signed_in(dashboard.beta)
    assert other.get(f"/incidents/{down}").status_code == 404
    csrf = csrf_of(other.get("/incidents").text)
    assert other.post(f"/incidents/{down}/notes", data={"csrf": csrf, "actor": "x", "text": "y"}).status_code == 404
    assert "gateway-berlin" not in other.get("/incidents").text


def test_maintenance_form_saves_one_off_and_recurring_windows_and_the_device_page_shows_them(dashboard) -> None:
    tenant, ids, _, _ = _fleet(dashboard, "maintpages")
    client = dashboard.signed_in(tenant)
    csrf = csrf_of(client.get("/maintenance").text)
    soon = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    past = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")
    bad = client.post("/maintenance", data={"csrf": csrf, "reason": "x", "scope": "tag", "tag": "site/paris",
                                            "starts_at": soon, "duration_minutes": "30", "repeat": ""})
    assert bad.status_code == 422 and "no device carries the tag" in bad.text
    assert 'value="site/paris"' in bad.text  # the form keeps what was typed
    bad_rule = client.post("/maintenance", data={"csrf": csrf, "reason": "x", "scope": "tenant", "starts_at": soon,
                                                 "duration_minutes": "30", "repeat": "custom", "rrule": "FREQ=NEVER"})
    assert bad_rule.status_code == 422 and "rrule: FREQ NEVER is not allowed" in bad_rule.text
    one_off = client.post("/maintenance", data={"csrf": csrf, "reason": "Pump swap", "scope": "device",
                                                "device_id": str(ids[1]), "starts_at": past,
                                                "duration_minutes": "60", "repeat": ""})
    assert one_off.status_code == 200 and "saved" in one_off.text
    weekly = client.post("/maintenance", data={"csrf": csrf, "reason": "Site Berlin patching", "scope": "tag",
                                               "tag": "site/berlin", "starts_at": soon, "duration_minutes": "120",
                                               "repeat": "FREQ=WEEKLY", "pinned": "on"})
    assert weekly.status_code == 200
    rows = sql(dashboard.database_url, "SELECT reason, scope, rrule, pinned FROM maintenance_windows "
               "WHERE tenant_id = $1 ORDER BY id", tenant.id)
    assert [tuple(r) for r in rows] == [("Pump swap", "device", None, False),
                                        ("Site Berlin patching", "tag", "FREQ=WEEKLY", True)]
    listing = client.get("/maintenance").text
    assert listing.index("Site Berlin patching") < listing.index("Pump swap")  # pinned first
    assert "in progress" in listing
    device_page = client.get(f"/devices/{ids[1]}").text
    section = device_page[device_page.index('id="device-maintenance"'):]
    assert "In progress" in section and "Pump swap" in section and "Site Berlin patching" in section
    assert 'id="device-maintenance"' not in client.get(f"/devices/{ids[2]}").text  # meter-2: none cover it


@pytest.fixture
def browser_page() -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        yield page
        context.close()
        browser.close()


@pytest.fixture
def browser_fleet(dashboard):
    """Set up before the browser starts: Playwright's sync API keeps an event loop running in this thread."""
    return _fleet(dashboard, "incbrowser")


@pytest.mark.browser
def test_incidents_page_timeline_and_maintenance_form_in_chromium(dashboard, browser_fleet, browser_page: Page
                                                                   ) -> None:
    tenant, ids, down, _ = browser_fleet
    page = browser_page
    base = f"http://{tenant.host}:{dashboard.port}"
    page.goto(f"{base}/incidents")
    page.fill("#api_key", tenant.api_key)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/incidents")
    expect(page.locator("table.incidents tbody tr")).to_have_count(2)
    page.select_option("select[name=status]", "open")
    page.click("#incident-filters button[type=submit]")
    expect(page.locator("table.incidents tbody tr")).to_have_count(1)
    page.click("text=gateway-berlin is down")
    expect(page).to_have_url(f"{base}/incidents/{down}")
    page.fill("#ack-form input[name=actor]", "Alice")
    page.click("#ack-form button[type=submit]")
    expect(page.locator("#acknowledged")).to_contain_text("by Alice")
    page.fill("#note-form input[name=actor]", "Bob")
    page.fill("#note-form textarea[name=text]", "Power cut on site; technician on the way.")
    page.click("#note-form button[type=submit]")
    events = page.locator(".timeline .event")
    expect(events).to_have_count(5)
    expect(events.nth(0)).to_contain_text("maintenance window 7")
    expect(events.nth(2)).to_contain_text("delivered (HTTP 200)")
    expect(events.nth(4)).to_contain_text("technician on the way")
    expect(page.locator("#suppressed-children")).to_contain_text("pump-7")
    _shots(page, "incident-timeline")
    page.goto(f"{base}/incidents")
    _shots(page, "incidents-list")

    page.goto(f"{base}/maintenance")
    page.fill("#maintenance-form input[name=reason]", "Sunday patching")
    page.select_option("#maintenance-form select[name=scope]", "tag")
    page.fill("#maintenance-form input[name=tag]", "site/berlin")
    page.fill("#maintenance-form input[name=starts_at]", "2027-01-03T02:00")
    page.fill("#maintenance-form input[name=duration_minutes]", "90")
    page.select_option("#maintenance-form select[name=repeat]", "custom")
    page.fill("#maintenance-form input[name=rrule]", "FREQ=WEEKLY;BYDAY=SU")
    page.click("#maintenance-form button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("saved")
    row = page.locator("#windows tbody tr").first
    expect(row).to_contain_text("Sunday patching")
    expect(row).to_contain_text("FREQ=WEEKLY;BYDAY=SU")
    expect(row).to_contain_text("2027-01-03 02:00:00 UTC")
    _shots(page, "maintenance-form")
    page.goto(f"{base}/devices/{ids[1]}")
    expect(page.locator("#device-maintenance")).to_contain_text("Sunday patching")


def _shots(page: Page, name: str) -> None:
    """Full-page screenshots at 1440 px and 390 px; at 390 px nothing may overflow the viewport sideways."""
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        if width == 390:
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, f"{name} overflows at 390 px"
    page.set_viewport_size({"width": 1440, "height": 900})
