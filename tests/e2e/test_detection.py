"""Issue 5 end to end, detection: a device slowed from ~5 ms to ~300 ms becomes `degraded` within a few
checks with an incident saying by how much, and recovers; a silent push device goes `down` after its grace
time and `up` on its next heartbeat. All real processes (tracker, simulator, three monitors, worker)."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from iot_processes import REGIONS, create_tenant, wait_until

pytestmark = pytest.mark.e2e

INTERVAL_S = 5
WARMUP = 3  # baseline samples per region before anomalies count (ANOMALY_WARMUP)
SLOW_CHECKS = 3  # slow checks in a row before `degraded` (ANOMALY_CHECKS default)


def _device(client: httpx.Client, device_id: int) -> dict:
    response = client.get(f"/v1/devices/{device_id}")
    response.raise_for_status()
    return response.json()


def test_slowed_device_becomes_degraded_with_its_slowdown_and_recovers(pipeline_factory):
    pipeline = pipeline_factory(3, worker_env={"ANOMALY_WARMUP": WARMUP})
    procs = pipeline.procs
    api_key = create_tenant(pipeline.tracker_url, "slow")
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        assert simulator.post("/devices", json={"delay_ms": 5}).status_code == 200  # a ~5 ms device
        body = [{"name": f"d{i}", "kind": "http", "target": f"http://127.0.0.1:{pipeline.sim_base_port + i}/",
                 "interval_s": INTERVAL_S, "timeout_ms": 2000} for i in range(3)]
        response = tenant.post("/v1/devices", json=body)
        assert response.status_code == 201, response.text
        ids = [d["id"] for d in response.json()["devices"]]
        victim = ids[1]

        def warmed_up() -> bool:
            regions = _device(tenant, victim)["regions"]
            return len(regions) == len(REGIONS) and all(r["samples"] >= WARMUP + 1 for r in regions)
        wait_until(warmed_up, (WARMUP + 4) * INTERVAL_S, "baseline warm-up in every region", procs)
        assert _device(tenant, victim)["state"] == "up"
        baseline = max(r["latency_mean_ms"] for r in _device(tenant, victim)["regions"])
        assert baseline < 50, f"baseline {baseline} ms: the simulated device should answer in ~5 ms"

        assert simulator.post("/devices/1", json={"delay_ms": 300}).status_code == 200
        slowed_at = time.monotonic()
        wait_until(lambda: _device(tenant, victim)["state"] == "degraded", (SLOW_CHECKS + 2) * INTERVAL_S,
                   "victim degraded", procs)
        detect_s = time.monotonic() - slowed_at
        incidents = tenant.get("/v1/incidents", params={"device_id": victim}).json()["items"]
        assert len(incidents) == 1 and incidents[0]["kind"] == "degraded"
        summary = incidents[0]["summary"]
        # "d1 is slow: 305 ms against a baseline of 5 ms (+300 ms) from ashburn, helsinki"
        match = re.search(r"(\d+) ms against a baseline of (\d+) ms \(\+(\d+) ms\)", summary)
        assert match, summary
        latency, base, above = (int(g) for g in match.groups())
        assert 295 <= latency < 1000 and base < 50 and above == pytest.approx(latency - base, abs=1)
        # only the slowed device, and it is still reachable (not down)
        states = {d["id"]: d["state"] for d in tenant.get("/v1/devices").json()["items"]}
        assert states == {ids[0]: "up", victim: "degraded", ids[2]: "up"}

        assert simulator.post("/devices/1", json={"delay_ms": 5}).status_code == 200
        wait_until(lambda: _device(tenant, victim)["state"] == "up", 2 * INTERVAL_S + 5, "victim up again", procs)
        incidents = tenant.get("/v1/incidents", params={"device_id": victim}).json()["items"]
        assert len(incidents) == 1 and incidents[0]["resolved_at"] is not None
    print(f"slow device degraded {detect_s:.1f} s after the slowdown (interval {INTERVAL_S} s)")


def test_silent_push_device_goes_down_after_its_grace_and_up_on_the_next_heartbeat(pipeline_factory):
    pipeline = pipeline_factory(1)
    procs = pipeline.procs
    api_key = create_tenant(pipeline.tracker_url, "push")
    grace_s = 5
    with pipeline.tracker(api_key) as tenant:
        created = tenant.post("/v1/devices", json={"name": "meter", "kind": "push", "interval_s": 5,
                                                   "grace_s": grace_s})
        assert created.status_code == 201, created.text
        device_id, token = created.json()["id"], created.json()["token"]
        device = httpx.Client(base_url=pipeline.tracker_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

        def beat() -> float:
            response = device.post("/v1/heartbeat")
            assert response.status_code == 200, response.text
            return time.monotonic()

        beat()
        wait_until(lambda: _device(tenant, device_id)["state"] == "up", 10, "push device up", procs)
        # keep sending for longer than the grace time: it must stay up
        until = time.monotonic() + grace_s + 3
        while time.monotonic() < until:
            last_beat = beat()
            assert _device(tenant, device_id)["state"] == "up"
            time.sleep(1)
        # silence: down after the grace time (the silence watch runs every 2 s), not before
        wait_until(lambda: _device(tenant, device_id)["state"] == "down", grace_s + 10, "silent device down", procs)
        silent_s = time.monotonic() - last_beat
        assert silent_s >= grace_s
        incidents = tenant.get("/v1/incidents", params={"device_id": device_id}).json()["items"]
        assert len(incidents) == 1 and incidents[0]["kind"] == "silent"
        assert f"grace {grace_s} s" in incidents[0]["summary"]

        beat()
        wait_until(lambda: _device(tenant, device_id)["state"] == "up", 10, "push device up on its heartbeat", procs)
        incidents = tenant.get("/v1/incidents", params={"device_id": device_id}).json()["items"]
        assert len(incidents) == 1 and incidents[0]["resolved_at"] is not None
        device.close()
    print(f"push device down {silent_s:.1f} s after its last heartbeat (grace {grace_s} s)")
