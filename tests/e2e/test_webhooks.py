"""Issue 5 end to end, alerts: a gateway with 200 children goes down -> exactly one incident and one signed
webhook (the gateway's); a child still down after its gateway recovers gets its own incident; a webhook
receiver that is down for a while gets every event afterwards, signatures valid. All real processes and a
real HTTP receiver."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from iot_processes import create_tenant, wait_until
from webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

INTERVAL_S = 5
CHILDREN = 200
SECRET = "e2e-webhook-secret-0123456789"


def _pages(client: httpx.Client, path: str, **params: object) -> list[dict]:
    """Every item of a newest-first paginated list (incidents, webhook deliveries)."""
    items: list[dict] = []
    before = None
    while True:
        query = {**params, "limit": 500, **({"before": before} if before else {})}
        response = client.get(path, params=query)
        response.raise_for_status()
        body = response.json()
        items.extend(body["items"])
        before = body["next_before"]
        if before is None:
            return items


def _count(client: httpx.Client, state: str) -> int:
    return client.get("/v1/devices", params={"state": state, "limit": 1}).json()["total"]


def _queue_drained(client: httpx.Client) -> bool:
    return not _pages(client, "/v1/webhook/deliveries", status="pending")


@pytest.fixture
def receiver():
    hook = WebhookReceiver(SECRET).start()
    yield hook
    hook.stop()


def test_gateway_down_pages_once_and_a_child_left_down_gets_its_own_incident(pipeline_factory, receiver):
    pipeline = pipeline_factory(CHILDREN + 1)
    procs = pipeline.procs
    api_key = create_tenant(pipeline.tracker_url, "gw")
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        assert tenant.put("/v1/webhook", json={"url": receiver.url, "secret": SECRET}).status_code == 200

        def spec(i: int) -> dict:
            return {"name": f"d{i}", "kind": "http", "target": f"http://127.0.0.1:{pipeline.sim_base_port + i}/",
                    "interval_s": INTERVAL_S, "timeout_ms": 1000}
        gateway = tenant.post("/v1/devices", json=spec(0)).json()["id"]
        response = tenant.post("/v1/devices", json=[{**spec(i), "parent_id": gateway} for i in range(1, CHILDREN + 1)])
        assert response.status_code == 201, response.text
        children = [d["id"] for d in response.json()["devices"]]
        wait_until(lambda: _count(tenant, "up") == CHILDREN + 1, 3 * INTERVAL_S + 15, "all devices up", procs)
        wait_until(lambda: _queue_drained(tenant) and len(receiver.snapshot()) >= CHILDREN + 1, 20,
                   "the `up` events delivered", procs)
        receiver.clear()

        # the gateway and all its children fail
        assert simulator.post("/devices", json={"devices": {"from": 0, "to": CHILDREN + 1}, "mode": "fail"}
                              ).status_code == 200
        wait_until(lambda: _count(tenant, "down") == CHILDREN + 1, 2 * INTERVAL_S + 20, "all down", procs)
        wait_until(lambda: receiver.snapshot(), 15, "the gateway's webhook", procs)
        wait_until(lambda: _queue_drained(tenant), 15, "webhook queue drained", procs)
        incidents = _pages(tenant, "/v1/incidents")
        assert [(i["device_id"], i["kind"], i["resolved_at"]) for i in incidents] == [(gateway, "down", None)]
        events = receiver.snapshot()
        assert [(e["device"]["id"], e["state"], e["incident"]["kind"]) for e in events] == [(gateway, "down", "down")]
        assert receiver.bad_signatures == 0
        receiver.clear()

        # the gateway and all children but the last recover; the last stays down and now pages on its own
        stuck = children[-1]
        assert simulator.post("/devices", json={"devices": {"from": 0, "to": CHILDREN}, "mode": "ok"}
                              ).status_code == 200
        wait_until(lambda: _count(tenant, "up") == CHILDREN, 2 * INTERVAL_S + 15, "all but one up", procs)

        def stuck_incident() -> dict | None:
            return next((i for i in _pages(tenant, "/v1/incidents", open=True) if i["device_id"] == stuck), None)
        incident = wait_until(stuck_incident, 3 * INTERVAL_S + 10, "the stuck child's own incident", procs)
        assert incident["kind"] == "down" and "after its parent d0 recovered" in incident["summary"]
        wait_until(lambda: len(receiver.snapshot()) >= 2 and _queue_drained(tenant), 15, "webhooks", procs)
        events = receiver.snapshot()
        assert sorted((e["type"], e["device"]["id"], e["state"]) for e in events) == sorted([
            ("device.state_changed", gateway, "up"), ("incident.opened", stuck, "down")])
        assert [(i["device_id"], i["resolved_at"] is None) for i in _pages(tenant, "/v1/incidents")] == [
            (stuck, True), (gateway, False)]
        assert _count(tenant, "down") == 1 and receiver.bad_signatures == 0


OUTAGE_S = 60  # "receiver down for a minute"
BACKOFF_S = 0.5  # WEBHOOK_BACKOFF_SECONDS: retries after 0.5, 1, 2, 4, 8 s, then every BACKOFF_CAP_S
BACKOFF_CAP_S = 8  # WEBHOOK_BACKOFF_CAP_SECONDS


def test_events_sent_while_the_receiver_is_down_all_arrive_afterwards(pipeline_factory, receiver):
    pipeline = pipeline_factory(4, worker_env={"WEBHOOK_BACKOFF_SECONDS": BACKOFF_S,
                                                "WEBHOOK_BACKOFF_CAP_SECONDS": BACKOFF_CAP_S})
    procs = pipeline.procs
    api_key = create_tenant(pipeline.tracker_url, "hooks")
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        assert tenant.put("/v1/webhook", json={"url": receiver.url, "secret": SECRET}).status_code == 200
        body = [{"name": f"d{i}", "kind": "http", "target": f"http://127.0.0.1:{pipeline.sim_base_port + i}/",
                 "interval_s": INTERVAL_S, "timeout_ms": 1000} for i in range(4)]
        assert tenant.post("/v1/devices", json=body).status_code == 201
        wait_until(lambda: _count(tenant, "up") == 4, 3 * INTERVAL_S + 15, "all devices up", procs)
        wait_until(lambda: _queue_drained(tenant), 20, "the `up` events delivered", procs)

        received_before = {e["event_id"] for e in receiver.snapshot()}
        received_count = len(receiver.snapshot())
        receiver.stop()
        down_at = time.monotonic()
        assert simulator.post("/devices", json={"devices": [0, 1, 2], "mode": "fail"}).status_code == 200
        wait_until(lambda: _count(tenant, "down") == 3, 2 * INTERVAL_S + 20, "three devices down", procs)
        assert simulator.post("/reset").status_code == 200
        wait_until(lambda: _count(tenant, "up") == 4, 2 * INTERVAL_S + 15, "all up again", procs)
        retried = [d for d in _pages(tenant, "/v1/webhook/deliveries", status="pending") if d["attempts"] > 0]
        assert retried and all(d["last_error"] for d in retried), "events should be failing while the receiver is down"
        wait_until(lambda: time.monotonic() - down_at >= OUTAGE_S, OUTAGE_S + 5, "the outage to last", procs)
        assert len(receiver.snapshot()) == received_count  # nothing can arrive while it is down

        receiver.start()
        back_at = time.monotonic()
        # worst case an attempt was scheduled just before the receiver came back: it waits one capped backoff
        wait_until(lambda: _queue_drained(tenant), BACKOFF_CAP_S + 15, "every queued event delivered", procs)
        catch_up_s = time.monotonic() - back_at
        deliveries = _pages(tenant, "/v1/webhook/deliveries")
        assert {d["status"] for d in deliveries} == {"delivered"}
        outage_events = {d["event_id"] for d in deliveries} - received_before
        assert len(outage_events) == 6  # three down, three up
        received = Counter(e["event_id"] for e in receiver.snapshot())
        assert outage_events <= set(received)  # every event arrived, signature verified by the receiver
        assert receiver.bad_signatures == 0
        duplicates = sum(n - 1 for n in received.values())
    print(f"webhook outage {OUTAGE_S} s, backoff base {BACKOFF_S} s: all {len(outage_events)} events delivered "
          f"{catch_up_s:.1f} s after the receiver came back; duplicate deliveries: {duplicates}")
