"""Issues 5 and 13 (region health), end to end: one region cut off from every device is reported unhealthy
within two check intervals, no device goes `down`, and the region is healthy again within two intervals
of the cut healing. The cut is either refused connections (the simulator answers that region 503) or
dropped packets (an nftables rule drops its SYNs: every probe waits for its timeout). All real processes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from iot_processes import ADMIN_TOKEN, REGIONS, wait_until

pytestmark = pytest.mark.e2e

DEVICES = 200
INTERVAL_S = 5
CUT_REGION = "tokyo"


def _regions(worker_url: str) -> dict[str, dict]:
    status = httpx.get(f"{worker_url}/status", timeout=5).json()
    return {r["name"]: r for r in status.get("regions") or []}


def _down(client: httpx.Client) -> int:
    response = client.get("/v1/devices", params={"state": "down", "limit": 1})
    response.raise_for_status()
    return response.json()["total"]


@contextlib.contextmanager
def _dropped(source: str, first_port: int, last_port: int) -> Iterator[None]:
    """Drop TCP packets from `source` to the simulator's ports (a table of its own, always removed)."""
    table = f"issue13_cut_{os.getpid()}"
    subprocess.run(["nft", "add", "table", "inet", table], check=True)
    try:
        subprocess.run(["nft", "add", "chain", "inet", table, "in",
                        "{ type filter hook input priority 0; policy accept; }"], check=True)
        subprocess.run(["nft", "add", "rule", "inet", table, "in", "ip", "saddr", source, "tcp", "dport",
                        f"{first_port}-{last_port}", "drop"], check=True)
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=False)


@pytest.mark.parametrize("cut", ["refused", "dropped"])
def test_cut_region_is_unhealthy_within_two_intervals_and_blames_no_device(pipeline_factory, cut: str):
    pipeline = pipeline_factory(DEVICES)  # default region-health settings: what a deployment runs
    procs = pipeline.procs
    with httpx.Client(base_url=pipeline.tracker_url, timeout=60) as admin:
        created = admin.post("/v1/tenants", json={"slug": "cut"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert created.status_code == 201, created.text
        api_key = created.json()["api_key"]
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator, contextlib.ExitStack() as stack:
        body = [{"name": f"d{i}", "kind": "http", "target": f"http://127.0.0.1:{pipeline.sim_base_port + i}/",
                 "interval_s": INTERVAL_S, "timeout_ms": 1000} for i in range(DEVICES)]
        assert tenant.post("/v1/devices", json=body).status_code == 201

        def all_up() -> bool:
            r = tenant.get("/v1/devices", params={"state": "up", "limit": 1})
            return r.json()["total"] == DEVICES
        wait_until(all_up, 3 * INTERVAL_S + 15, "all devices up", procs)

        if cut == "refused":
            response = simulator.post("/devices", json={"refuse_sources": [REGIONS[CUT_REGION]]})
            assert response.status_code == 200, response.text
        else:
            stack.enter_context(_dropped(REGIONS[CUT_REGION], pipeline.sim_base_port,
                                         pipeline.sim_base_port + DEVICES - 1))
        cut_at = time.monotonic()
        wait_until(lambda: _regions(pipeline.worker_url).get(CUT_REGION, {}).get("healthy") is False,
                   30, f"{CUT_REGION} reported unhealthy", procs, interval=0.1)
        unhealthy_after = time.monotonic() - cut_at
        reason = _regions(pipeline.worker_url)[CUT_REGION]["reason"]
        assert "network" in reason
        assert all(r["healthy"] for name, r in _regions(pipeline.worker_url).items() if name != CUT_REGION)
        # several intervals under the cut: the cut region's failures blame no device
        until = time.monotonic() + 3 * INTERVAL_S
        while time.monotonic() < until:
            assert _down(tenant) == 0
            time.sleep(0.5)
        detail = tenant.get("/v1/devices", params={"limit": 1}).json()["items"][0]
        regions = {r["region"]: r for r in tenant.get(f"/v1/devices/{detail['id']}").json()["regions"]}
        assert regions[CUT_REGION]["last_ok"] is False and regions["ashburn"]["last_ok"] is True

        if cut == "refused":
            healed = simulator.post("/devices", json={"refuse_sources": []})
            assert healed.status_code == 200, healed.text
        else:
            stack.close()
        healed_at = time.monotonic()
        wait_until(lambda: _regions(pipeline.worker_url)[CUT_REGION]["healthy"] is True, 40,
                   f"{CUT_REGION} healthy again", procs, interval=0.1)
        healthy_after = time.monotonic() - healed_at
        # and rejoining blames no device either (its views from the cut do not count until re-checked)
        until = time.monotonic() + 2 * INTERVAL_S
        while time.monotonic() < until:
            assert _down(tenant) == 0
            time.sleep(0.5)
    print(f"cut ({cut}): unhealthy after {unhealthy_after:.1f} s, healthy {healthy_after:.1f} s after the heal "
          f"(interval {INTERVAL_S} s)")
    assert unhealthy_after <= 2 * INTERVAL_S, f"cut reflected after {unhealthy_after:.1f} s"
    assert healthy_after <= 2 * INTERVAL_S, f"heal reflected after {healthy_after:.1f} s"
