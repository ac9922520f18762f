"""Issue 14 end to end: real tracker, worker, monitors and simulator. Channels created through the API get
the events their routing rule selects, through the real worker: an Apprise json:// channel for devices
tagged `site/berlin` (its receiver down for a while: delivered once it is back) and an e-mail channel for
one chosen device, through the deployment's SMTP relay (aiosmtpd). Messages link to the device page."""

from __future__ import annotations

import json

import pytest
from channel_receivers import HttpReceiver, SmtpReceiver
from iot_processes import create_tenant, wait_until

pytestmark = pytest.mark.e2e

INTERVAL_S = 5


@pytest.fixture
def receivers():
    http, smtp = HttpReceiver(status=503).start(), SmtpReceiver().start()
    yield http, smtp
    http.stop()
    smtp.stop()


def test_channels_get_their_devices_events_through_the_real_worker(pipeline_factory, receivers):
    http, smtp = receivers
    pipeline = pipeline_factory(2, worker_env={
        "DOMAIN": "iot.example", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp.port, "SMTP_SECURITY": "none",
        "SMTP_FROM": "alerts@iot.example", "WEBHOOK_BACKOFF_SECONDS": 0.5, "WEBHOOK_BACKOFF_CAP_SECONDS": 1})
    procs = pipeline.procs
    api_key = create_tenant(pipeline.tracker_url, "chan")
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        def spec(i: int, tags: list[str]) -> dict:
            return {"name": f"d{i}", "kind": "http", "target": f"http://127.0.0.1:{pipeline.sim_base_port + i}/",
                    "interval_s": INTERVAL_S, "timeout_ms": 1000, "tags": tags}
        berlin = tenant.post("/v1/devices", json=spec(0, ["site/berlin"])).json()["id"]
        paris = tenant.post("/v1/devices", json=spec(1, ["site/paris"])).json()["id"]
        created = tenant.post("/v1/channels", json={
            "name": "berlin json", "kind": "apprise", "config": {"url": f"json://127.0.0.1:{http.port}/hook"},
            "route": "tags", "route_tags": ["site/berlin"]})
        assert created.status_code == 201, created.text
        json_channel = created.json()["id"]
        created = tenant.post("/v1/channels", json={
            "name": "paris mail", "kind": "email", "config": {"to": ["paris-ops@example.com"]},
            "route": "devices", "route_device_ids": [paris], "events": ["down"]})
        assert created.status_code == 201, created.text
        wait_until(lambda: tenant.get("/v1/devices", params={"state": "up"}).json()["total"] == 2,
                   3 * INTERVAL_S + 20, "both devices up", procs)

        assert simulator.post("/devices", json={"devices": {"from": 0, "to": 2}, "mode": "fail"}).status_code == 200
        wait_until(lambda: smtp.messages, 2 * INTERVAL_S + 30, "the e-mail for d1", procs)
        (mail,) = smtp.messages
        assert mail["Subject"] == "d1 is DOWN" and mail["To"] == "paris-ops@example.com"
        assert f"https://chan.iot.example/devices/{paris}" in mail.get_payload()

        # the json receiver answered 503 so far: the event waits and is retried
        wait_until(lambda: http.refused >= 2, 30, "retries against the down receiver", procs)
        pending = tenant.get(f"/v1/channels/{json_channel}/deliveries").json()["items"]
        assert pending and pending[0]["status"] == "pending" and pending[0]["last_error"]
        http.status = 200
        wait_until(lambda: http.requests, 30, "the berlin event after the receiver came back", procs)
        down = json.loads(http.requests[0].body)
        assert down["title"] == "d0 is DOWN" and f"https://chan.iot.example/devices/{berlin}" in down["message"]

        assert simulator.post("/devices", json={"devices": {"from": 0, "to": 2}, "mode": "ok"}).status_code == 200
        wait_until(lambda: len(http.requests) >= 2, 2 * INTERVAL_S + 30, "the berlin recovery", procs)
        up = json.loads(http.requests[1].body)
        assert up["title"] == "d0 is UP" and "up again after" in up["message"]
        assert all("d1" not in json.loads(r.body)["title"] for r in http.requests)
        assert len(smtp.messages) == 1  # the mail channel asked for "down" only
        delivered = tenant.get(f"/v1/channels/{json_channel}/deliveries").json()["items"]
        assert [d["status"] for d in delivered] == ["delivered", "delivered"]
