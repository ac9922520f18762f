"""The dashboard in real headless Chromium, on the real pipeline (simulator, two monitors, worker).

Sign in, see the fleet come up, make one simulated device fail and watch its row turn `down` without
a reload, then open its chart. Screenshots go to test-artifacts/dashboard/ (gitignored).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from egress_targets import TEST_EGRESS_ALLOW_CIDRS
from iot_processes import Procs, wait_until
from playwright.sync_api import Page, expect, sync_playwright

from dashboard.harness import ROOT, run, setup_tenants, sql
from dashboard.pipeline import Pipeline, start_pipeline
from iot.dashboard.seed import SeedSettings, seed

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
DEVICES = 12
FAILING = 2  # seeded devices at closed ports: down from the start
DEMO_KEY = "iotk_browser-test-demo-key-0123456789"
_databases = itertools.count()


@pytest.fixture(scope="module")
def pipeline(postgres_server, redis_server, tmp_path_factory) -> Iterator[Pipeline]:
    database_url = postgres_server.create_database(f"browser_{next(_databases)}")
    run(setup_tenants(database_url, ()))  # migrate
    redis_url = redis_server.url.replace("/0", "/3")  # its own Redis database: other tests flush db 0
    processes = Procs(tmp_path_factory.mktemp("pipeline"))
    try:
        running = start_pipeline(processes, database_url, redis_url, DEVICES)
        settings = SeedSettings(
            database_url=database_url, redis_url=redis_url, demo_tenant="demo", demo_api_key=DEMO_KEY,
            seed_devices=DEVICES, seed_failing=FAILING, seed_interval_s=5, seed_simulator_host="127.0.0.1",
            seed_simulator_base_port=running.simulator_base_port, egress_allow_cidrs=TEST_EGRESS_ALLOW_CIDRS,
        )
        result = asyncio.run(seed(settings))
        assert result["devices_created"] == DEVICES + FAILING
        wait_until(lambda: sql(database_url, "SELECT count(*) AS n FROM devices WHERE state = 'up'")[0]["n"] == DEVICES,
                   90, f"all {DEVICES} simulated devices up", processes.procs)
        yield running
    finally:
        processes.stop()
        print(processes.logs(15))


@pytest.fixture
def page() -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        yield page
        context.close()
        browser.close()


def shot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_sign_in_watch_a_device_go_down_live_and_open_its_chart(pipeline: Pipeline, page: Page) -> None:
    base = f"http://demo.localhost:{pipeline.dashboard_port}"
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/signin?next=%2F")
    page.fill("#api_key", "iotk_not-the-key-0000000000")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("not an API key of demo")
    page.fill("#api_key", DEMO_KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/")

    # The fleet: every simulated device up, the two at closed ports down, both regions healthy.
    expect(page.locator('[data-count="up"] .n')).to_have_text(str(DEVICES), timeout=30_000)
    expect(page.locator('[data-count="down"] .n')).to_have_text(str(FAILING), timeout=60_000)
    expect(page.locator("#regions tbody tr")).to_have_count(2, timeout=30_000)
    expect(page.locator("#regions")).to_contain_text("frankfurt")
    expect(page.locator("#regions")).to_contain_text("amsterdam")
    shot(page, "1-overview")

    page.click("text=Devices")
    expect(page).to_have_url(f"{base}/devices")
    row = page.locator('tr[data-device="sensor-003"]')
    expect(row.locator(".badge")).to_have_text("up")
    shot(page, "2-devices-all-up")

    # Mark this page instance: a reload or navigation would drop the marker.
    page.evaluate("window.__same_page = true")
    failed = httpx.post(f"{pipeline.simulator_control}/devices/3", json={"mode": "fail"}, timeout=10)
    assert failed.status_code == 200, failed.text
    expect(row.locator(".badge")).to_have_text("down", timeout=60_000)
    assert page.evaluate("window.__same_page") is True, "the row changed without a reload"
    expect(page).to_have_url(f"{base}/devices")
    shot(page, "3-device-down-live")

    row.locator("a").click()
    expect(page.locator("h1")).to_have_text("sensor-003")
    expect(page.locator("#device-live h2 .badge")).to_have_text("down")
    expect(page.locator("#region-states tbody tr")).to_have_count(2)
    # The chart: a line per region from the worker's rollups (written in batches: wait for the first).
    expect(page.locator("svg.chart polyline.series")).to_have_count(2, timeout=90_000)
    expect(page.locator(".legend")).to_contain_text("frankfurt")
    expect(page.locator("#device-live")).to_contain_text("down")
    shot(page, "4-device-chart")
