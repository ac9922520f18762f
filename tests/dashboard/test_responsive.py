"""The dashboard on a phone and a desktop, light and dark (issue 15, "A UI that works everywhere").

Every page, listed from the app's own routes (GET routes without path parameters, plus one instance of each
parameterised page), is opened in real headless Chromium at 360 px and 1440 px wide, with the system in light
and in dark mode, and must not scroll sideways (`scrollWidth <= clientWidth`). Each is screenshotted to
test-artifacts/dashboard/ (gitignored), named `<width>-<scheme>-<tenant>-<page>.png`. The pages show a fleet
with long names, targets and tags, incidents and region states, and a tenant with no devices (empty states).
Also: the theme toggle (remembered, applied before the first paint) and prefers-color-scheme; the skip link
is the first thing Tab reaches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from dashboard.harness import ROOT, Dashboard, TenantKey, create_devices, new_tenant, run, sql
from iot.dashboard.app import create_app
from iot.db import connect
from iot.egress import EgressPolicy
from iot.repo import account_tokens, channels, status_pages
from iot.repo.channels import ChannelSpec
from iot.repo.devices import DeviceSpec
from iot.settings import DashboardSettings

pytestmark = [pytest.mark.browser]

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
WIDTHS = (360, 1440)
SCHEMES = ("light", "dark")
# Not pages: JSON health, htmx fragments (parts of the pages below, swapped into them), file downloads.
NOT_PAGES = re.compile(r"^/health$|^/fragments/|\.csv$")
LIGHT_BG, DARK_BG = "rgb(245, 247, 251)", "rgb(15, 23, 36)"  # --bg of app.css


def page_paths() -> list[str]:
    """GET paths of the dashboard app, read from its routes (the OpenAPI document lists them all)."""
    schema = create_app(DashboardSettings()).openapi()
    paths = [p for p, ops in schema["paths"].items() if "get" in ops and not NOT_PAGES.search(p)]
    assert "/devices" in paths and "/devices/{device_id}" in paths, paths
    return paths


PATHS = page_paths()


def fill(path: str, values: dict[str, int | str]) -> str:
    """One instance of a parameterised page; a new parameter needs a value here (the test says which)."""
    for name in re.findall(r"{(\w+)}", path):
        assert name in values, f"{path}: add an instance for {{{name}}} to the test's fleet"
        path = path.replace(f"{{{name}}}", str(values[name]))
    return path


@pytest.fixture(scope="module")
def fleet(dashboard: Dashboard) -> tuple[TenantKey, TenantKey, dict[str, int | str]]:
    full = new_tenant(dashboard.database_url, "responsive")
    empty = new_tenant(dashboard.database_url, "responsive-new")
    long_target = "https://" + "a-very-long-subdomain-name-of-a-pump." * 3 + "example.com/health/check?x=" + "9" * 60
    gateway, pump, *_ = create_devices(dashboard.database_url, full, [
        DeviceSpec("gateway-" + "berlin-" * 12 + "north", "icmp", "127.4.0.1", tags=["env:prod", "site/berlin"]),
        DeviceSpec("pump-" + "x" * 120, "http", long_target, tags=[f"a-fairly-long-tag-{i}" for i in range(8)]),
        DeviceSpec("beacon-1", "push", interval_s=30),
        DeviceSpec("sensor-1", "tcp", "127.4.0.2:502"),
    ])
    sql(dashboard.database_url, "UPDATE devices SET parent_id = $1 WHERE id = $2", gateway, pump)
    sql(dashboard.database_url, "UPDATE devices SET state = 'down' WHERE id = $1", pump)
    sql(dashboard.database_url, """
        INSERT INTO device_region_state (device_id, region, state, last_ok, last_latency_ms, last_error)
        SELECT $1, region, 'down', false, 1234.5, 'connect timeout after 5000 ms to ' || $2
        FROM unnest(ARRAY['frankfurt', 'amsterdam']) AS region""", pump, long_target)
    (incident,) = sql(dashboard.database_url, "INSERT INTO incidents (tenant_id, device_id, kind, summary) "
                      "VALUES ($1, $2, 'down', $3) RETURNING id", full.id, pump, "pump failed from 2 of 2 regions: " + long_target)
    sql(dashboard.database_url, "INSERT INTO incident_events (tenant_id, incident_id, at, kind, text, actor) "
        "VALUES ($1, $2, now(), 'note', $3, $4)", full.id, incident["id"], "checked on site: " + long_target,
        "operator-" + "x" * 60)
    sql(dashboard.database_url, "INSERT INTO maintenance_windows (tenant_id, scope, tag, reason, starts_at, ends_at, rrule) "
        "VALUES ($1, 'tag', 'a-fairly-long-tag-1', $2, now(), now() + interval '1 hour', 'FREQ=WEEKLY;BYDAY=SU')",
        full.id, "firmware " + "upgrade-" * 20)
    sql(dashboard.database_url, "INSERT INTO metric_rules (tenant_id, tag, metric, operator, threshold, for_s) "
        "VALUES ($1, 'a-fairly-long-tag-1', $2, '>', 8, 300)", full.id, "temperature_" + "probe_" * 15)
    channel = run(_channel(dashboard.database_url, full.id, "On-call " + "webhook-" * 12,
                           "json://127.0.0.1:9/" + "hooks-path-" * 10 + "token-0123456789abcdef"))
    status_page = run(_status_page(dashboard.database_url, full.id, [gateway, pump]))
    invite_token = run(_invitation(dashboard.database_url, full.id, "new-" + "x" * 60 + "@example.com"))
    # A reset needs a user, and a user ends the API-key sessions this test signs in with: the error page of an
    # unknown reset link stands in for it.
    return full, empty, {"device_id": pump, "incident_id": incident["id"], "channel_id": channel,
                         "page_id": status_page.id, "slug": status_page.slug,
                         "invite_token": invite_token, "reset_token": "iotr_unknown"}


async def _invitation(database_url: str, tenant_id: int, email: str) -> str:
    conn = await connect(database_url)
    try:
        return await account_tokens.create_invitation(conn, tenant_id, email, "viewer", None)
    finally:
        await conn.close()


async def _status_page(database_url: str, tenant_id: int, device_ids: list[int]):
    """A published status page of the long-named devices (the public /status/{slug} and its edit page)."""
    conn = await connect(database_url)
    try:
        return await status_pages.create_page(conn, tenant_id, status_pages.PageSpec(
            "public-" + "s" * 40, "Service status of " + "a-long-company-name-" * 5, "x" * 300,
            device_ids=device_ids, tags=["a-fairly-long-tag-1"], published=True))
    finally:
        await conn.close()


async def _channel(database_url: str, tenant_id: int, name: str, url: str) -> int:
    conn = await connect(database_url)
    try:
        box = DashboardSettings().secret_box()
        made = await channels.create_channel(conn, box, tenant_id, ChannelSpec(name, "apprise", {"url": url}),
                                             egress=EgressPolicy.parse("127.0.0.0/8"))
        return made.id
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield launched
        launched.close()


def signed_in_context(browser: Browser, dashboard: Dashboard, tenant: TenantKey, **options) -> BrowserContext:
    context = browser.new_context(**options)
    page = context.new_page()
    page.goto(f"http://{tenant.slug}.localhost:{dashboard.port}/signin")
    page.fill("#api_key", tenant.api_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"http://{tenant.slug}.localhost:{dashboard.port}/")
    page.close()
    return context


def overflow(page: Page) -> dict[str, int] | None:
    """The page's widths when it scrolls sideways (and what sticks out), else None."""
    return page.evaluate("""() => {
        const root = document.documentElement;
        if (root.scrollWidth <= root.clientWidth) return null;
        const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > root.clientWidth + 0.5)
            .slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className);
        return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, wide: wide};
    }""")


def off_loop(function, *args):
    """Run a harness helper (it uses asyncio.run) beside Playwright's event loop, in a thread of its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def slug_of(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "overview"


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
def test_no_page_scrolls_sideways(dashboard, fleet, browser, width: int, scheme: str) -> None:
    full, empty, values = fleet
    viewport = {"width": width, "height": 800}
    checked = []
    for tenant in (full, empty):
        context = signed_in_context(browser, dashboard, tenant, viewport=viewport, color_scheme=scheme)
        page = context.new_page()
        base = f"http://{tenant.slug}.localhost:{dashboard.port}"
        for path in PATHS:
            if "{" in path and tenant is empty:
                continue  # the new tenant has no device pages
            url = base + fill(path, values)
            response = page.goto(url)
            assert response is not None and response.status < 500, (url, response and response.status)
            page.wait_for_load_state("load")
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == \
                (DARK_BG if scheme == "dark" else LIGHT_BG), (url, scheme)
            assert overflow(page) is None, (url, width, overflow(page))
            page.screenshot(path=str(ARTIFACTS / f"{width}-{scheme}-{tenant.slug}-{slug_of(path)}.png"), full_page=True)
            checked.append(page.url)
        if tenant is empty:
            page.goto(base + "/devices")
            assert page.locator("#first-steps").is_visible(), "a new tenant is told what to do first"
            assert page.locator("#first-steps a", has_text="Import a CSV").get_attribute("href") == "/devices/new#add-csv"
        context.close()
    # signed out: the sign-in page (where /signin sends everyone else) and an error page
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    page = context.new_page()
    for name, url in (("signin", f"http://{full.slug}.localhost:{dashboard.port}/signin"),
                      ("error", f"http://nosuch.localhost:{dashboard.port}/")):
        page.goto(url)
        assert overflow(page) is None, (url, width, overflow(page))
        page.screenshot(path=str(ARTIFACTS / f"{width}-{scheme}-signed-out-{name}.png"), full_page=True)
    context.close()
    assert len(checked) >= len(PATHS), checked


def test_the_device_list_becomes_cards_on_a_phone(dashboard, fleet, browser) -> None:
    full, _empty, _values = fleet
    for width, expected in ((360, "none"), (1440, "table-header-group")):
        context = signed_in_context(browser, dashboard, full, viewport={"width": width, "height": 800})
        page = context.new_page()
        page.goto(f"http://{full.slug}.localhost:{dashboard.port}/devices")
        assert page.evaluate("getComputedStyle(document.querySelector('table.devices thead')).display") == expected
        context.close()


def test_dark_mode_follows_the_system_until_the_toggle_picks_one_and_is_remembered(dashboard, fleet, browser) -> None:
    full, _empty, _values = fleet
    base = f"http://{full.slug}.localhost:{dashboard.port}"
    background = "getComputedStyle(document.body).backgroundColor"
    for system, other, other_bg in (("light", "dark", DARK_BG), ("dark", "light", LIGHT_BG)):
        context = signed_in_context(browser, dashboard, full, color_scheme=system)
        # Record the theme at the moment <body> is parsed: set by then, the first paint is already right.
        context.add_init_script("""new MutationObserver((_, observer) => {
            if (document.body) { window.__themeAtBody = document.documentElement.getAttribute('data-theme'); observer.disconnect(); }
        }).observe(document, {childList: true, subtree: true});""")
        page = context.new_page()
        page.goto(base + "/devices")
        assert page.evaluate(background) == (LIGHT_BG if system == "light" else DARK_BG)
        toggle = page.locator("#theme-toggle")
        assert toggle.is_visible() and toggle.get_attribute("aria-pressed") == ("true" if system == "dark" else "false")
        toggle.click()
        assert page.evaluate(background) == other_bg
        assert toggle.get_attribute("aria-pressed") == ("true" if other == "dark" else "false")
        page.goto(base + "/settings")  # another page: remembered, and applied before the body was parsed
        assert page.evaluate(background) == other_bg
        assert page.evaluate("window.__themeAtBody") == other
        page.locator("#theme-toggle").click()  # and back
        page.reload()
        assert page.evaluate(background) == (LIGHT_BG if system == "light" else DARK_BG)
        context.close()


def test_the_skip_link_is_the_first_focus_and_jumps_to_the_content(dashboard, fleet, browser) -> None:
    full, _empty, _values = fleet
    context = signed_in_context(browser, dashboard, full, viewport={"width": 360, "height": 800})
    page = context.new_page()
    for path in ("/", "/devices", "/devices/new"):
        page.goto(f"http://{full.slug}.localhost:{dashboard.port}{path}")
        skip = page.locator("a.skip-link")
        box = skip.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 0, "hidden until focused"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link", path
        box = skip.bounding_box()
        assert box is not None and box["y"] >= 0, "visible once focused"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main", path
        page.screenshot(path=str(ARTIFACTS / f"360-light-skip-link-{slug_of(path)}.png"))
    context.close()


def test_checked_devices_stay_checked_while_the_list_refreshes_and_the_bulk_form_acts_on_them(dashboard, browser) -> None:
    tenant = off_loop(new_tenant, dashboard.database_url, "bulk-browser")
    ids = off_loop(create_devices, dashboard.database_url, tenant, [DeviceSpec(f"node-{i}", "icmp", f"127.4.1.{i}") for i in range(1, 5)])
    context = signed_in_context(browser, dashboard, tenant, viewport={"width": 360, "height": 800})
    page = context.new_page()
    page.goto(f"http://{tenant.slug}.localhost:{dashboard.port}/devices")
    page.check(f"#pick-{ids[0]}")
    page.check(f"#pick-{ids[2]}")
    for _ in range(2):  # the table is swapped every 2 s: the ticks must survive it
        with page.expect_response(lambda r: "/fragments/devices" in r.url):
            pass
    assert page.is_checked(f"#pick-{ids[0]}") and page.is_checked(f"#pick-{ids[2]}")
    assert not page.is_checked(f"#pick-{ids[1]}")
    page.select_option("#bulk select[name=action]", "pause")
    page.click("#bulk button[type=submit]")
    page.wait_for_url("**/devices?*bulk=pause*")
    assert "Pause checks: 2 of 2 selected devices changed." in page.locator(".notice").inner_text()
    paused = off_loop(sql, dashboard.database_url, "SELECT name FROM devices WHERE tenant_id = $1 AND NOT enabled ORDER BY name",
                 tenant.id)
    assert [r["name"] for r in paused] == ["node-1", "node-3"]
    context.close()


def test_the_parent_picker_searches_as_you_type(dashboard, browser) -> None:
    tenant = off_loop(new_tenant, dashboard.database_url, "picker-browser")
    off_loop(create_devices, dashboard.database_url, tenant, [DeviceSpec(f"gateway-{city}", "icmp", f"127.4.2.{i}")
                                                    for i, city in enumerate(("berlin", "paris", "rome"), 1)])
    context = signed_in_context(browser, dashboard, tenant)
    page = context.new_page()
    page.goto(f"http://{tenant.slug}.localhost:{dashboard.port}/devices/new")
    page.fill("input[name=parent_q]", "par")
    expect(page.locator("#parent-options input[type=radio]")).to_have_count(2)  # no parent, gateway-paris
    page.check("#parent-options label:has-text('gateway-paris') input")
    page.fill("input[name=parent_q]", "rom")  # the chosen parent stays, checked, beside the new matches
    expect(page.locator("#parent-options")).to_contain_text("gateway-rome")
    assert page.locator("#parent-options input:checked").locator("xpath=..").inner_text().strip().startswith("gateway-paris")
    page.fill("#add-one input[name=name]", "pump-9")
    page.select_option("#add-one select[name=kind]", "icmp")
    page.fill("#add-one input[name=target]", "127.4.2.9")
    page.click("#add-one button[type=submit]")
    page.wait_for_load_state("load")
    parent = off_loop(sql, dashboard.database_url, "SELECT p.name FROM devices d JOIN devices p ON p.id = d.parent_id "
                 "WHERE d.tenant_id = $1 AND d.name = 'pump-9'", tenant.id)
    assert [r["name"] for r in parent] == ["gateway-paris"]
    context.close()
