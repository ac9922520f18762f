"""Issue 3 end to end: 1,000 simulated devices checked from three regions reach `up`; a failing device
goes `down` within its interval + 15 s and back `up` after it recovers. All real processes."""

from __future__ import annotations

import time

import httpx
import pytest
from iot_processes import ADMIN_TOKEN, REGIONS, wait_until

pytestmark = pytest.mark.e2e

DEVICES = 1000
INTERVAL_S = 10


def _count(client: httpx.Client, state: str) -> int:
    response = client.get("/v1/devices", params={"state": state, "limit": 1})
    response.raise_for_status()
    return response.json()["total"]


def _state(client: httpx.Client, device_id: int) -> dict:
    response = client.get(f"/v1/devices/{device_id}")
    response.raise_for_status()
    return response.json()


def test_devices_go_up_a_failing_device_goes_down_and_recovers(pipeline_factory):
    pipeline = pipeline_factory(DEVICES)
    procs = pipeline.procs
    with httpx.Client(base_url=pipeline.tracker_url, timeout=60) as admin:
        created = admin.post("/v1/tenants", json={"slug": "e2e"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert created.status_code == 201, created.text
        api_key = created.json()["api_key"]

    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        body = {"devices": [
            {"name": f"sim-{i}", "kind": "http", "target": f"http://127.0.0.1:{pipeline.sim_base_port + i}/health",
             "interval_s": INTERVAL_S, "timeout_ms": 2000}
            for i in range(DEVICES)
        ]}
        response = tenant.post("/v1/devices", json=body)
        assert response.status_code == 201, response.text
        ids = [d["id"] for d in response.json()["devices"]]
        assert len(ids) == DEVICES

        # every device is checked from every region within one interval and reaches `up`
        wait_until(lambda: _count(tenant, "up") == DEVICES, 3 * INTERVAL_S + 15, "all devices up", procs)
        status = httpx.get(f"{pipeline.worker_url}/status").json()
        assert status["leader"] is True and status["devices_scheduled"] == DEVICES
        assert sorted(status["live_regions"]) == sorted(REGIONS)
        assert all(r["healthy"] for r in status["regions"])
        # A device is `up` as soon as a healthy region passes it; every region's view of it follows within one
        # interval (views of unchanged devices are written by the evaluator's periodic flush).
        detail = wait_until(lambda: _seen_from(tenant, ids[0], REGIONS), INTERVAL_S + 5,
                            "every region's view of the device", procs)
        assert all(r["last_ok"] and r["last_latency_ms"] is not None for r in detail["regions"])
        for region, url in pipeline.monitor_urls.items():
            health = httpx.get(f"{url}/health").json()
            assert health["region"] == region and health["checks_per_second"] > 0
            metrics = httpx.get(f"{url}/metrics").text
            assert 'iot_monitor_checks_total{kind="http",outcome="up"}' in metrics
        # the simulator saw probes from all three source addresses
        by_source = simulator.get("/hits").json()["by_source"]
        assert set(REGIONS.values()) <= set(by_source)

        # one device fails: down within its interval + 15 s, with one incident naming the failure
        victim_index = 417
        victim = ids[victim_index]
        assert simulator.post(f"/devices/{victim_index}", json={"mode": "fail"}).status_code == 200
        failed_at = time.monotonic()
        wait_until(lambda: _state(tenant, victim)["state"] == "down", INTERVAL_S + 15, "victim down", procs)
        detect_s = time.monotonic() - failed_at
        incidents = tenant.get("/v1/incidents", params={"device_id": victim}).json()["items"]
        assert len(incidents) == 1 and incidents[0]["kind"] == "down" and incidents[0]["resolved_at"] is None
        assert "HTTP 500" in incidents[0]["summary"]
        assert _count(tenant, "down") == 1  # no other device was blamed

        # it recovers: up again, incident resolved
        assert simulator.post(f"/devices/{victim_index}/reset").status_code == 200
        wait_until(lambda: _state(tenant, victim)["state"] == "up", INTERVAL_S + 15, "victim up again", procs)
        incidents = tenant.get("/v1/incidents", params={"device_id": victim}).json()["items"]
        assert len(incidents) == 1 and incidents[0]["resolved_at"] is not None
        assert _count(tenant, "up") == DEVICES

    # SIGTERM: the worker and every monitor finish their work and exit cleanly
    for proc in procs:
        if proc.name == "worker" or proc.name.startswith("monitor-"):
            assert proc.stop() == 0, f"{proc.name} did not exit cleanly:\n{proc.tail()}"
    print(f"time to detect one failure: {detect_s:.1f} s (interval {INTERVAL_S} s)")


def _seen_from(tenant: httpx.Client, device_id: int, regions) -> dict | None:
    detail = _state(tenant, device_id)
    return detail if {r["region"] for r in detail["regions"]} == set(regions) else None
