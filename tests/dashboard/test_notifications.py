"""The notification settings page: add, edit, send a test that arrives at a local receiver, delete; errors
name the field; secrets shown masked; another tenant's channels answer 404. Then the same in real headless
Chromium, with screenshots at 1440 px and 390 px into test-artifacts/dashboard/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from channel_receivers import HttpReceiver
from playwright.sync_api import Page, expect, sync_playwright

from dashboard.harness import ROOT, Dashboard, TenantKey, create_devices, new_tenant, sql
from iot.repo.devices import DeviceSpec

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
TOKEN = "tok-0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _channel_id(dashboard: Dashboard, tenant_id: int, name: str) -> int:
    return sql(dashboard.database_url, "SELECT id FROM channels WHERE tenant_id = $1 AND name = $2", tenant_id, name)[0]["id"]


def test_add_test_edit_delete_with_masked_secrets(dashboard: Dashboard, receiver: HttpReceiver) -> None:
    tenant = new_tenant(dashboard.database_url, "notif-http")
    client = dashboard.signed_in(tenant)
    page = client.get("/notifications")
    assert page.status_code == 200 and "No channels yet" in page.text
    csrf = _csrf(page.text)
    url = f"json://127.0.0.1:{receiver.port}/hooks/{TOKEN}"
    added = client.post("/notifications", data={"csrf": csrf, "name": "Ops JSON", "kind": "apprise", "target": url,
                                                "event_down": "1", "event_up": "1", "route": "all", "enabled": "1"})
    assert added.status_code == 200, added.text
    assert "Channel &#39;Ops JSON&#39; added" in added.text
    assert TOKEN not in added.text and f"json://127.0.0.1:{receiver.port}/•••" in added.text
    channel_id = _channel_id(dashboard, tenant.id, "Ops JSON")

    tested = client.post(f"/notifications/{channel_id}/test", data={"csrf": csrf})
    assert "it arrived" in tested.text, tested.text
    assert json.loads(receiver.requests[-1].body)["title"] == "Test notification from my-iot-app"

    bad = client.post("/notifications", data={"csrf": csrf, "name": "Bad", "kind": "slack",
                                              "target": "json://example.com/x", "event_down": "1", "route": "all"})
    assert bad.status_code == 422 and "URL: this is not a Slack URL" in bad.text

    # edit with an empty URL keeps the stored one; route by tag
    saved = client.post(f"/notifications/{channel_id}", data={
        "csrf": csrf, "name": "Ops JSON", "kind": "apprise", "target": "", "event_down": "1", "route": "tags",
        "tags": "site/berlin, env:prod", "enabled": "1"})
    assert "saved" in saved.text, saved.text
    row = sql(dashboard.database_url, "SELECT route, route_tags, events FROM channels WHERE id = $1", channel_id)[0]
    assert (row["route"], list(row["route_tags"]), list(row["events"])) == ("tags", ["site/berlin", "env:prod"], ["down"])
    assert "it arrived" in client.post(f"/notifications/{channel_id}/test", data={"csrf": csrf}).text

    # another tenant cannot see, test, edit or delete it
    other = dashboard.signed_in(new_tenant(dashboard.database_url, "notif-other"))
    other_csrf = _csrf(other.get("/notifications").text)
    assert other.get(f"/notifications/{channel_id}/edit").status_code == 404
    assert client.get("/notifications/99999999999999999999/edit").status_code == 404
    too_long = client.post("/notifications", data={"csrf": csrf, "name": "n" * 201, "kind": "email",
                                                    "target": "a@example.com", "event_down": "1", "route": "all"})
    assert too_long.status_code == 422 and "Name:" in too_long.text
    for action in ("test", "delete", ""):
        path = f"/notifications/{channel_id}/{action}".rstrip("/")
        assert other.post(path, data={"csrf": other_csrf, "name": "x", "kind": "apprise"}).status_code == 404

    deleted = client.post(f"/notifications/{channel_id}/delete", data={"csrf": csrf})
    assert "deleted" in deleted.text and "No channels yet" in deleted.text


@pytest.fixture
def browser_page() -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        yield page
        context.close()
        browser.close()


@pytest.fixture
def browser_tenant(dashboard: Dashboard) -> TenantKey:
    """Set up before the browser starts (Playwright's sync API runs an event loop in this thread)."""
    tenant = new_tenant(dashboard.database_url, "notif-browser")
    create_devices(dashboard.database_url, tenant, [DeviceSpec(name="gateway-berlin", kind="icmp", target="127.0.0.1"),
                                                    DeviceSpec(name="camera-paris", kind="icmp", target="127.0.0.2")])
    return tenant


@pytest.mark.browser
def test_notification_settings_in_a_browser(dashboard: Dashboard, receiver: HttpReceiver, browser_tenant: TenantKey,
                                            browser_page: Page) -> None:
    page, tenant = browser_page, browser_tenant
    base = f"http://{tenant.slug}.localhost:{dashboard.port}"
    page.goto(f"{base}/signin?next=/notifications")
    page.fill("#api_key", tenant.api_key)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/notifications")
    expect(page.locator("h1")).to_have_text("Notifications")

    page.fill("input[name=name]", "On-call JSON")
    page.select_option("#kind", "apprise")
    page.fill("#target", f"json://127.0.0.1:{receiver.port}/hooks/{TOKEN}")
    page.check("input[name=event_region_unhealthy]")
    page.check("input[name=route][value=devices]")
    page.select_option("select[name=device]", label=["gateway-berlin"])
    page.click("#channel-form button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("added")
    row = page.locator('tr[data-channel="On-call JSON"]')
    expect(row).to_contain_text("1 chosen")
    expect(row).to_contain_text("region_unhealthy")
    assert TOKEN not in page.content()

    page.fill("input[name=name]", "Team mail")
    page.select_option("#kind", "email")
    page.fill("#target", "ops@example.com, oncall@example.com")
    page.click("#channel-form button[type=submit]")
    expect(page.locator('tr[data-channel="Team mail"]')).to_contain_text("ops@example.com, oncall@example.com")

    before = len(receiver.requests)
    row.locator("button", has_text="Send test").click()
    expect(page.locator(".notice")).to_contain_text("it arrived")
    assert len(receiver.requests) == before + 1
    page.screenshot(path=str(ARTIFACTS / "notifications-1440.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/notifications")
    expect(page.locator('tr[data-channel="On-call JSON"]')).to_be_visible()
    # readable at 390 px: the page itself does not scroll sideways (the table scrolls in its own box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "notifications-390.png"), full_page=True)

    page.set_viewport_size({"width": 1440, "height": 900})
    page.locator('tr[data-channel="On-call JSON"] a').click()
    expect(page.locator("#channel-form-card h2")).to_have_text("Edit On-call JSON")
    page.check("input[name=route][value=tags]")
    page.fill("input[name=tags]", "site/berlin")
    page.click("#channel-form button[type=submit]")
    expect(page.locator('tr[data-channel="On-call JSON"]')).to_contain_text("tags: site/berlin")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('tr[data-channel="Team mail"] button', has_text="Delete").click()
    expect(page.locator(".notice")).to_contain_text("deleted")
    expect(page.locator('tr[data-channel="Team mail"]')).to_have_count(0)
