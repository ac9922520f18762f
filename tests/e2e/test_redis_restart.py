"""Redis restarted (empty) under load: the worker re-elects itself, monitors re-join and recreate their
groups, evaluation resumes, and a failure afterwards still raises exactly one incident."""

from __future__ import annotations

import httpx
import pytest
from iot_processes import ADMIN_TOKEN, REGIONS, wait_until
from servers import RedisServer

pytestmark = pytest.mark.e2e

DEVICES = 100
INTERVAL_S = 5


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.cleanup()


def _count(client: httpx.Client, state: str) -> int:
    return client.get("/v1/devices", params={"state": state, "limit": 1}).json()["total"]


def test_pipeline_resumes_after_a_redis_restart(own_redis, pipeline_factory):  # redis outlives the apps
    pipeline = pipeline_factory(DEVICES, redis_url=own_redis.url)
    procs = pipeline.procs
    with httpx.Client(base_url=pipeline.tracker_url, timeout=60) as admin:
        created = admin.post("/v1/tenants", json={"slug": "restart"},
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        api_key = created.json()["api_key"]
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        body = [{"name": f"d{i}", "kind": "http", "target": f"http://127.0.0.1:{pipeline.sim_base_port + i}/",
                 "interval_s": INTERVAL_S, "timeout_ms": 1000} for i in range(DEVICES)]
        response = tenant.post("/v1/devices", json=body)
        assert response.status_code == 201
        ids = [d["id"] for d in response.json()["devices"]]
        wait_until(lambda: _count(tenant, "up") == DEVICES, 3 * INTERVAL_S + 15, "all devices up", procs)

        own_redis.restart()  # all streams, groups, heartbeats and the lock are gone

        def resumed() -> bool:
            status = httpx.get(f"{pipeline.worker_url}/status", timeout=5).json()
            return status["leader"] and sorted(status["live_regions"] or []) == sorted(REGIONS)
        wait_until(resumed, 30, "worker leading with all regions live again", procs)
        processed = httpx.get(f"{pipeline.worker_url}/status").json()["results_processed"]
        wait_until(lambda: httpx.get(f"{pipeline.worker_url}/status").json()["results_processed"]
                   >= processed + DEVICES * len(REGIONS), 4 * INTERVAL_S, "results flowing again", procs)

        victim_index = 7
        assert simulator.post(f"/devices/{victim_index}", json={"mode": "fail"}).status_code == 200
        wait_until(lambda: tenant.get(f"/v1/devices/{ids[victim_index]}").json()["state"] == "down",
                   INTERVAL_S + 15, "victim down after the restart", procs)
        incidents = tenant.get("/v1/incidents", params={"device_id": ids[victim_index]}).json()["items"]
        assert len(incidents) == 1
        assert _count(tenant, "down") == 1
        assert simulator.post(f"/devices/{victim_index}/reset").status_code == 200
        wait_until(lambda: _count(tenant, "up") == DEVICES, INTERVAL_S + 15, "victim recovered", procs)
