"""The device form in real headless Chromium: picking a kind shows that kind's option fields only (and
grace for push, retries for probed kinds), and a device added through the form keeps its options."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from dashboard.harness import ROOT, sql

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def page() -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


def test_the_form_shows_the_selected_kinds_options_and_saves_them(dashboard, page: Page) -> None:
    base = f"http://{dashboard.acme.slug}.localhost:{dashboard.port}"
    page.goto(f"{base}/signin")
    page.fill("#api_key", dashboard.acme.api_key)
    page.click("button[type=submit]")
    page.goto(f"{base}/devices/new")
    form = page.locator("#add-one")
    http, tls, dns = (form.locator(f'fieldset[data-kind="{k}"]') for k in ("http", "tls", "dns"))

    form.locator("select[name=kind]").select_option("tls")
    expect(tls).to_be_visible()
    expect(http).to_be_hidden()
    expect(dns).to_be_hidden()
    expect(form.locator("input[name=retries]")).to_be_visible()
    expect(form.locator("input[name=grace_s]")).to_be_hidden()

    form.locator("select[name=kind]").select_option("push")
    for fieldset in (http, tls, dns):
        expect(fieldset).to_be_hidden()
    expect(form.locator("input[name=retries]")).to_be_hidden()
    expect(form.locator("input[name=grace_s]")).to_be_visible()

    form.locator("select[name=kind]").select_option("http")
    expect(http).to_be_visible()
    expect(tls).to_be_hidden()
    form.locator("input[name=name]").fill("browser-http")
    form.locator("input[name=target]").fill("http://127.0.0.1:9/health")
    http.locator("input[name=opt_expected_status]").fill("200-299")
    http.locator("input[name=opt_keyword]").fill("ok")
    page.screenshot(path=str(ARTIFACTS / "check-options-form.png"), full_page=True)
    form.locator("button[type=submit]").click()
    expect(page.locator("main")).to_contain_text("browser-http")
    # playwright's loop runs in this thread: query from another one
    with ThreadPoolExecutor(1) as pool:
        (row,) = pool.submit(sql, dashboard.database_url, "SELECT options FROM devices WHERE name = 'browser-http'").result()
    assert row["options"] == {"expected_status": ["200-299"], "keyword": "ok"}
