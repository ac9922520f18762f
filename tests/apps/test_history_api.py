"""The history endpoints of the tracker (issue 14): uptime with daily buckets and SLA breach, latency series
from minute or hourly rollups by range, SLA target, 4xx naming the field for a bad range or target, and
another tenant's device answering 404 like a missing one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from test_tracker_api import assert_error, db_query, http_device, new_tenant

from iot.worker.store import UPSERT_ROLLUPS


def _device(client, name: str = "pump") -> int:
    response = client.post("/v1/devices", json=http_device(name))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_uptime_from_the_timeline_with_sla_breach(tracker) -> None:
    now = datetime.now(UTC)
    with new_tenant(tracker) as client:
        device = _device(client)
        # up for 3 days, then down for the last 36 minutes: 2.5 % of 24 h
        db_query(tracker, "UPDATE devices SET state = 'up', state_since = $2 WHERE id = $1", device,
                 now - timedelta(days=3))
        db_query(tracker, "UPDATE devices SET state = 'down', state_since = $2 WHERE id = $1", device,
                 now - timedelta(minutes=36))
        none_set = client.get(f"/v1/devices/{device}/uptime", params={"range": "24h"}).json()
        sla = client.put(f"/v1/devices/{device}/sla", json={"sla_target": 99.5})
        day = client.get(f"/v1/devices/{device}/uptime", params={"range": "24h"}).json()
        quarter = client.get(f"/v1/devices/{device}/uptime", params={"range": "90d"}).json()
        cleared = client.put(f"/v1/devices/{device}/sla", json={"sla_target": None}).json()
    assert sla.status_code == 200 and sla.json() == {"device_id": device, "sla_target": 99.5}
    assert none_set["sla_target"] is None and none_set["sla_breach"] is None
    assert day["range"] == "24h" and day["sla_target"] == 99.5 and day["sla_breach"] is True
    assert abs(day["uptime_percent"] - 97.5) < 0.01
    assert abs(day["downtime_seconds"] - 36 * 60) < 5  # the request ran a moment after `now`
    assert day["excluded_seconds"] == 0
    assert len(quarter["days"]) == 90
    # before the device existed: no data, so the 90-day figure counts only the 3 days it was watched
    assert quarter["no_data_seconds"] > 86 * 86400
    assert abs(quarter["uptime_percent"] - 100 * (3 * 86400 - 36 * 60) / (3 * 86400)) < 0.01
    assert [d["uptime_percent"] for d in quarter["days"][:80]] == [None] * 80
    assert quarter["days"][-1]["downtime_seconds"] > 0
    assert cleared == {"device_id": device, "sla_target": None}


def test_latency_series_reads_minute_rollups_for_24h_and_hourly_beyond(tracker) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with new_tenant(tracker) as client:
        device = _device(client)
        minute = now - timedelta(hours=2)
        db_query(tracker, UPSERT_ROLLUPS, [device, device], ["frankfurt", "tokyo"],
                 [minute.timestamp()] * 2, [3, 3], [1, 0], ["{10,20,30}", "{100,200,300}"])
        hour = (now - timedelta(days=3)).replace(minute=0)
        db_query(tracker, "INSERT INTO rollups_hourly (device_id, region, hour, checks, failures, latency_p50, "
                 "latency_p95, latency_max) VALUES ($1, 'frankfurt', $2, 60, 2, 42, 80, 120)", device, hour)
        day = client.get(f"/v1/devices/{device}/latency", params={"range": "24h"}).json()
        week = client.get(f"/v1/devices/{device}/latency", params={"range": "7d"}).json()
    assert day["source"] == "minute" and day["bucket_seconds"] == 600
    by_region = {r["region"]: r["points"] for r in day["regions"]}
    assert by_region["frankfurt"] == [{"start": by_region["frankfurt"][0]["start"], "checks": 3, "failures": 1,
                                       "latency_p50_ms": 20.0, "latency_p95_ms": 29.0, "latency_max_ms": 30.0}]
    assert by_region["tokyo"][0]["latency_p50_ms"] == 200.0
    assert week["source"] == "hourly" and week["bucket_seconds"] == 3600
    assert [(r["region"], [p["checks"] for p in r["points"]]) for r in week["regions"]] == [("frankfurt", [60])]
    assert week["regions"][0]["points"][0]["latency_p50_ms"] == 42.0


def test_bad_range_and_bad_sla_are_4xx_naming_the_field(tracker) -> None:
    with new_tenant(tracker) as client:
        device = _device(client)
        for path in ("uptime", "latency"):
            assert_error(client.get(f"/v1/devices/{device}/{path}", params={"range": "1y"}), 422, "range", "90d")
        assert_error(client.put(f"/v1/devices/{device}/sla", json={"sla_target": 120}), 422, "sla_target", "100")
        assert_error(client.put(f"/v1/devices/{device}/sla", json={"sla_target": 99.12345}), 422, "sla_target",
                     "decimals")
        assert_error(client.put(f"/v1/devices/{device}/sla", json={"target": 99}), 422, "target")
        assert client.get("/v1/devices/0/uptime").status_code == 422


def test_another_tenants_device_is_not_found(tracker) -> None:
    with new_tenant(tracker) as owner, new_tenant(tracker) as other:
        device = _device(owner)
        owner.put(f"/v1/devices/{device}/sla", json={"sla_target": 99.0})
        answers = [other.get(f"/v1/devices/{device}/uptime"), other.get(f"/v1/devices/{device}/latency"),
                   other.put(f"/v1/devices/{device}/sla", json={"sla_target": 50})]
        missing = other.get("/v1/devices/99999999/uptime")
        kept = owner.get(f"/v1/devices/{device}/uptime").json()["sla_target"]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert answers[0].json()["detail"] == missing.json()["detail"].replace("99999999", str(device))
    assert kept == 99.0


def test_openapi_documents_the_history_endpoints(tracker) -> None:
    with tracker.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    assert paths["/v1/devices/{device_id}/uptime"]["get"]["summary"] == "Uptime of a device"
    assert "range" in {p["name"] for p in paths["/v1/devices/{device_id}/latency"]["get"]["parameters"]}
    assert "put" in paths["/v1/devices/{device_id}/sla"]


def test_maintenance_windows_are_left_out_of_uptime_and_counted_apart(tracker) -> None:
    # Issue 14: uptime excludes maintenance time. The device was down for the last 36 minutes, 30 of them
    # inside a one-off window for its tag: only 6 minutes count against it.
    now = datetime.now(UTC).replace(microsecond=0)
    with new_tenant(tracker) as client:
        made = client.post("/v1/devices", json=http_device("pump", tags=["site/berlin"]))
        device = made.json()["id"]
        db_query(tracker, "UPDATE devices SET state = 'up', state_since = $2 WHERE id = $1", device,
                 now - timedelta(days=3))
        db_query(tracker, "UPDATE devices SET state = 'down', state_since = $2 WHERE id = $1", device,
                 now - timedelta(minutes=36))
        window = client.post("/v1/maintenance", json={
            "scope": "tag", "tag": "site/berlin", "reason": "pump swap",
            "starts_at": (now - timedelta(minutes=30)).isoformat(), "duration_minutes": 30})
        assert window.status_code == 201, window.text
        day = client.get(f"/v1/devices/{device}/uptime", params={"range": "24h"}).json()
        page = client.get(f"/v1/devices/{device}")
    assert abs(day["excluded_seconds"] - 30 * 60) < 5
    assert abs(day["downtime_seconds"] - 6 * 60) < 5
    assert abs(day["uptime_percent"] - 100 * (86400 - 1800 - 360) / (86400 - 1800)) < 0.01
    assert page.status_code == 200
