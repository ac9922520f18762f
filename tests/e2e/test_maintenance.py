"""Issue 14 end to end, maintenance: real processes (tracker, worker, monitors, simulator) and a real
webhook receiver. Two devices fail; the one in a maintenance window (created over the API) gets no
incident and no webhook while the other does; the window is deleted while it is still down, and its
incident opens then, with one signed `incident.opened` webhook and a timeline that says why it came late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from iot_processes import create_tenant, wait_until
from test_webhooks import SECRET, _count, _pages, _queue_drained, receiver  # noqa: F401  (receiver: a fixture)

pytestmark = pytest.mark.e2e

INTERVAL_S = 5


def test_a_window_holds_back_the_incident_and_webhook_until_it_ends(pipeline_factory, receiver):  # noqa: F811
    pipeline = pipeline_factory(2)
    procs = pipeline.procs
    api_key = create_tenant(pipeline.tracker_url, "maint")
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        assert tenant.put("/v1/webhook", json={"url": receiver.url, "secret": SECRET}).status_code == 200
        ids = [tenant.post("/v1/devices", json={
            "name": f"d{i}", "kind": "http", "target": f"http://127.0.0.1:{pipeline.sim_base_port + i}/",
            "interval_s": INTERVAL_S, "timeout_ms": 1000, "tags": ["site/berlin"] if i == 0 else []}).json()["id"]
            for i in range(2)]
        inside, outside = ids
        start = datetime.now(UTC) - timedelta(minutes=1)
        window = tenant.post("/v1/maintenance", json={
            "scope": "tag", "tag": "site/berlin", "reason": "Firmware upgrade",
            "starts_at": start.isoformat(), "duration_minutes": 60})
        assert window.status_code == 201 and window.json()["active"], window.text
        wait_until(lambda: _count(tenant, "up") == 2, 3 * INTERVAL_S + 15, "both devices up", procs)
        wait_until(lambda: _queue_drained(tenant) and len(receiver.snapshot()) >= 2, 20, "the up events", procs)
        receiver.clear()

        assert simulator.post("/devices", json={"devices": {"from": 0, "to": 2}, "mode": "fail"}).status_code == 200
        wait_until(lambda: _count(tenant, "down") == 2, 2 * INTERVAL_S + 20, "both down", procs)
        wait_until(lambda: receiver.snapshot() and _queue_drained(tenant), 15, "the outside device's webhook", procs)
        assert [(i["device_id"], i["kind"]) for i in _pages(tenant, "/v1/incidents")] == [(outside, "down")]
        assert [(e["device"]["id"], e["state"]) for e in receiver.snapshot()] == [(outside, "down")]
        receiver.clear()

        # the window ends early (deleted) while the device is still down: its incident opens now
        assert tenant.delete(f"/v1/maintenance/{window.json()['id']}").status_code == 204

        def inside_incident() -> dict | None:
            return next((i for i in _pages(tenant, "/v1/incidents", open=True) if i["device_id"] == inside), None)
        incident = wait_until(inside_incident, 3 * INTERVAL_S + 15, "the held-back incident", procs)
        assert "after maintenance window" in incident["summary"] and "(Firmware upgrade) ended" in incident["summary"]
        wait_until(lambda: receiver.snapshot() and _queue_drained(tenant), 15, "its webhook", procs)
        assert [(e["type"], e["device"]["id"]) for e in receiver.snapshot()] == [("incident.opened", inside)]
        assert receiver.bad_signatures == 0
        timeline = tenant.get(f"/v1/incidents/{incident['id']}").json()["timeline"]
        assert [e["kind"] for e in timeline][:2] == ["suppressed", "opened"]
        assert "Firmware upgrade" in timeline[0]["text"]
        assert [(e["kind"], e["text"], e["result"]) for e in timeline if e["kind"] == "notified"] == [
            ("notified", "webhook incident.opened (down)", "delivered (HTTP 204)")]
