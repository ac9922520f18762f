"""Issue 16: the API's `GET /v1/regions` and the dashboard overview show each region's real last
heartbeat, not the time its health last changed. Real processes: three monitors heartbeating every 2 s,
a worker, the tracker and the dashboard; the regions stay healthy throughout.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import httpx
import pytest
from iot_processes import REGIONS, create_tenant, wait_until

pytestmark = pytest.mark.e2e

HEARTBEAT_S = 2  # the pipeline's monitors (HEARTBEAT_SECONDS)
FRESH_S = 3 * HEARTBEAT_S  # "within a few heartbeat intervals"
STABLE_FOR_S = 12  # longer than FRESH_S: a value written once, when the region first appeared, is stale by then
SESSION_SECRET = "e2e-session-secret-0123456789abcdef"


def _api_regions(client: httpx.Client) -> dict[str, dict]:
    response = client.get("/v1/regions")
    response.raise_for_status()
    return {r["name"]: r for r in response.json()}


def _overview_heartbeats(client: httpx.Client) -> dict[str, datetime]:
    """region -> the overview's "Last heartbeat" (its exact UTC time is the cell's title)."""
    page = client.get("/fragments/overview")
    page.raise_for_status()
    cells = re.findall(r"<tr>\s*<td>(\w+)</td>.*?<td title=\"([^\"]+)\">", page.text, re.S)
    return {name: datetime.strptime(at, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
            for name, at in cells if at != "-"}


def test_regions_show_the_latest_heartbeat_while_health_is_stable(pipeline_factory) -> None:
    pipeline = pipeline_factory(2, extra_services={
        "dashboard": (["dashboard"], {"SESSION_SECRET": SESSION_SECRET, "DOMAIN": "localhost"}),
    })
    api_key = create_tenant(pipeline.tracker_url, "beats")
    with pipeline.tracker(api_key) as tenant, httpx.Client(
        base_url=pipeline.urls["dashboard"], headers={"Host": "beats.localhost"}, timeout=30,
    ) as dashboard:
        signed_in = dashboard.post("/signin", data={"api_key": api_key, "next": "/"})
        assert signed_in.status_code == 303, signed_in.text

        def all_healthy() -> bool:
            regions = _api_regions(tenant)
            return set(regions) == set(REGIONS) and all(r["healthy"] for r in regions.values())
        wait_until(all_healthy, 60, "every region recorded healthy by the worker", pipeline.procs)
        time.sleep(STABLE_FOR_S)  # health does not change: nothing but heartbeats happens meanwhile
        assert all_healthy(), pipeline.logs()

        now = datetime.now(UTC)
        api_ages = {name: (now - datetime.fromisoformat(r["last_heartbeat_at"])).total_seconds()
                    for name, r in _api_regions(tenant).items()}
        assert all(age <= FRESH_S for age in api_ages.values()), (
            f"GET /v1/regions: last heartbeat ages {api_ages} s; monitors heartbeat every {HEARTBEAT_S} s")

        now = datetime.now(UTC)
        shown = _overview_heartbeats(dashboard)
        assert set(shown) == set(REGIONS), shown
        page_ages = {name: (now - at).total_seconds() for name, at in shown.items()}
        assert all(age <= FRESH_S + 1 for age in page_ages.values()), (  # +1: the page shows whole seconds
            f"overview: last heartbeat ages {page_ages} s; monitors heartbeat every {HEARTBEAT_S} s")
