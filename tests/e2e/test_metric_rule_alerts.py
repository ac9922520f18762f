"""Issue 15 end to end, metric rules: a device pushes through the real tracker, the real worker's leader judges the
rules and a real receiver gets signed `incident.opened` / `incident.resolved` webhooks. `temperature > 8 for
5 min` on a tag opens only once the points cover five minutes; `battery < 15` on the device opens at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from egress_stack import Stack, stack_for_test, tenant_client
from iot_processes import wait_until
from webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

SECRET = "e2e-metric-rules-secret-0123456789"


@pytest.fixture
def stack(postgres_server, redis_server, tmp_path: Path, request) -> Iterator[Stack]:
    with stack_for_test(postgres_server, redis_server, tmp_path, request, "metric_rules") as running:
        yield running


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _metric_events(receiver: WebhookReceiver) -> list[tuple[str, str]]:
    return [(e["type"], e["incident"]["summary"]) for e in receiver.snapshot()
            if e["type"].startswith("incident.") and e["incident"]["kind"] == "metric"]


def test_rules_open_and_resolve_incidents_with_signed_webhooks(stack: Stack) -> None:
    receiver = WebhookReceiver(SECRET).start()
    try:
        tracker = stack.service("tracker", ["tracker"])
        stack.spawn("worker", ["worker"], APP_PORT=0, METRIC_RULES_PERIOD_SECONDS=0.5, WEBHOOK_BACKOFF_SECONDS=1)
        with tenant_client(tracker, "cold") as tenant:
            assert tenant.put("/v1/webhook", json={"url": receiver.url, "secret": SECRET}).status_code == 200
            created = tenant.post("/v1/devices", json={"name": "fridge-1", "kind": "push", "tags": ["cold-chain"]})
            device_id, token = created.json()["id"], created.json()["token"]
            for rule in ({"metric": "temperature", "operator": ">", "threshold": 8, "for_s": 300, "tag": "cold-chain"},
                         {"metric": "battery", "operator": "<", "threshold": 15, "device_id": device_id}):
                assert tenant.post("/v1/metric-rules", json=rule).status_code == 201
            device = httpx.Client(base_url=tracker, headers={"Authorization": f"Bearer {token}"}, timeout=30)

            now = datetime.now(UTC)
            # above 8 for four minutes only: nothing may open
            points = [{"name": "temperature", "value": 9.5, "ts": _iso(now - timedelta(minutes=m))} for m in range(4, -1, -1)]
            assert device.post("/v1/metrics", json=points + [{"name": "battery", "value": 80}]).status_code == 200
            battery_low = [{"name": "battery", "value": 12}]
            assert device.post("/v1/metrics", json=battery_low).status_code == 200
            wait_until(lambda: _metric_events(receiver) == [("incident.opened", "fridge-1: battery < 15 (last 12)")],
                       30, "the battery incident's webhook", stack.procs)
            assert not any("temperature" in s for _, s in _metric_events(receiver))  # four minutes are not five

            # the device sends the backlog of the minutes before: now the points cover five minutes and more
            backlog = [{"name": "temperature", "value": 9.0, "ts": _iso(now - timedelta(minutes=m))} for m in (6, 5)]
            assert device.post("/v1/metrics", json=backlog).status_code == 200
            wait_until(lambda: ("incident.opened", "fridge-1: temperature > 8 for 5 min (last 9.5)")
                       in _metric_events(receiver), 30, "the temperature incident's webhook", stack.procs)

            assert device.post("/v1/metrics", json=[{"name": "temperature", "value": 6.5}]).status_code == 200
            wait_until(lambda: ("incident.resolved", "fridge-1: temperature > 8 for 5 min (last 9.5)")
                       in _metric_events(receiver), 30, "the temperature incident to resolve", stack.procs)
            open_incidents = tenant.get("/v1/incidents", params={"open": True}).json()["items"]
            assert [(i["kind"], i["summary"]) for i in open_incidents] == [("metric", "fridge-1: battery < 15 (last 12)")]
            assert receiver.bad_signatures == 0
            device.close()
    finally:
        receiver.stop()
