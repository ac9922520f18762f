"""The metric endpoints of a real `iot tracker`: rule CRUD with its 4xx reasons, series per range, latest values,
tenant isolation. Points go in through POST /v1/metrics, so rollups are the ones ingest writes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import httpx
from iot_processes import Tracker
from test_tracker_api import assert_error, db_query

_slugs = itertools.count()


def _tenant(tracker: Tracker) -> httpx.Client:
    return tracker.client(tracker.create_tenant(f"m{next(_slugs)}-metrics"))


def _push_device(api: httpx.Client, name: str, tags: list[str] | None = None) -> tuple[int, str]:
    created = api.post("/v1/devices", json={"name": name, "kind": "push", "tags": tags or []})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["token"]


def _ingest(tracker: Tracker, token: str, points: list[dict]) -> None:
    with tracker.client(token) as device:
        response = device.post("/v1/metrics", json=points)
    assert response.status_code == 200, response.text


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def test_rule_crud_and_description(tracker: Tracker) -> None:
    with _tenant(tracker) as api:
        fridge, _ = _push_device(api, "fridge-1")
        created = api.post("/v1/metric-rules", json={"metric": "temperature", "operator": ">", "threshold": 8,
                                                     "for_s": 300, "device_id": fridge})
        assert created.status_code == 201, created.text
        rule = created.json()
        assert rule["description"] == "temperature > 8 for 5 min" and rule["enabled"] is True
        assert rule["device_id"] == fridge and rule["tag"] is None and rule["kind"] == "threshold"

        tag_rule = api.post("/v1/metric-rules", json={"metric": "battery", "operator": "<", "threshold": 15,
                                                      "tag": "Fleet:North"}).json()
        assert tag_rule["tag"] == "fleet:north" and tag_rule["description"] == "battery < 15"
        assert [r["id"] for r in api.get("/v1/metric-rules").json()] == [rule["id"], tag_rule["id"]]

        # moving the rule to a tag clears its device; turning it into an anomaly rule drops the threshold
        changed = api.patch(f"/v1/metric-rules/{rule['id']}", json={"tag": "cold-chain", "kind": "anomaly",
                                                                    "z_score": 3})
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert (body["device_id"], body["tag"], body["operator"], body["threshold"]) == (None, "cold-chain", None,
                                                                                          None)
        assert body["description"] == "temperature anomaly (z > 3) for 5 min"
        assert api.patch(f"/v1/metric-rules/{rule['id']}", json={"enabled": False}).json()["enabled"] is False
        assert api.get(f"/v1/metric-rules/{rule['id']}").json()["enabled"] is False

        assert api.delete(f"/v1/metric-rules/{rule['id']}").status_code == 204
        assert api.get(f"/v1/metric-rules/{rule['id']}").status_code == 404
        assert api.delete(f"/v1/metric-rules/{rule['id']}").status_code == 404
    with tracker.client() as anonymous:
        assert anonymous.get("/v1/metric-rules").status_code == 401
        paths = anonymous.get("/openapi.json").json()["paths"]
    for path in ("/v1/metric-rules", "/v1/metric-rules/{rule_id}", "/v1/devices/{device_id}/metrics",
                 "/v1/devices/{device_id}/metrics/latest"):
        assert path in paths
    assert paths["/v1/metric-rules"]["post"]["summary"] == "Create a metric rule"


def test_rule_validation_names_field_and_fix(tracker: Tracker) -> None:
    with _tenant(tracker) as api:
        device, _ = _push_device(api, "d")
        base = {"metric": "temperature", "operator": ">", "threshold": 8}
        cases = [
            ({**base}, "device_id", "exactly one"),
            ({**base, "device_id": device, "tag": "x"}, "device_id", "exactly one"),
            ({"metric": "t", "threshold": 8, "device_id": device}, "operator", "one of > >="),
            ({"metric": "t", "operator": ">", "device_id": device}, "threshold", "required for a threshold"),
            ({**base, "operator": "=>", "device_id": device}, "operator", ""),
            ({**base, "device_id": device, "for_s": -1}, "for_s", ""),
            ({**base, "device_id": device, "for_s": 86401}, "for_s", ""),
            ({**base, "device_id": device, "threshold": 1e300}, "threshold", ""),
            ({"metric": "t", "kind": "anomaly", "device_id": device}, "z_score", "required for an anomaly"),
            ({"metric": "t", "kind": "anomaly", "z_score": 0, "device_id": device}, "z_score", ""),
            ({**base, "metric": "", "device_id": device}, "metric", ""),
            ({**base, "metric": "a\x00b", "device_id": device}, "metric", "control"),
            ({**base, "tag": "bad tag!"}, "tag", ""),
            ({**base, "device_id": device, "colour": "red"}, "colour", ""),
            ({**base, "device_id": 999999999}, "device_id", "no such device"),
        ]
        for body, field, reason in cases:
            assert_error(api.post("/v1/metric-rules", json=body), 422, field, reason)
        rule = api.post("/v1/metric-rules", json={**base, "device_id": device}).json()
        assert_error(api.patch(f"/v1/metric-rules/{rule['id']}", json={}), 422, "body", "no field")
        assert_error(api.patch(f"/v1/metric-rules/{rule['id']}", json={"kind": "anomaly"}), 422, "z_score")
        assert_error(api.patch(f"/v1/metric-rules/{rule['id']}", json={"for_s": None}), 422, "for_s", "null")
        # nothing stored by the refused requests
        assert len(api.get("/v1/metric-rules").json()) == 1


def test_tenants_cannot_see_or_target_each_other(tracker: Tracker) -> None:
    with _tenant(tracker) as acme, _tenant(tracker) as other:
        acme_device, acme_token = _push_device(acme, "a")
        rule = acme.post("/v1/metric-rules", json={"metric": "t", "operator": ">", "threshold": 1,
                                                   "device_id": acme_device}).json()
        _ingest(tracker, acme_token, [{"name": "t", "value": 5}])
        assert other.get(f"/v1/metric-rules/{rule['id']}").status_code == 404
        assert other.patch(f"/v1/metric-rules/{rule['id']}", json={"enabled": False}).status_code == 404
        assert other.delete(f"/v1/metric-rules/{rule['id']}").status_code == 404
        assert other.get("/v1/metric-rules").json() == []
        # a rule on another tenant's device is refused like a missing device
        assert_error(other.post("/v1/metric-rules", json={"metric": "t", "operator": ">", "threshold": 1,
                                                          "device_id": acme_device}), 422, "device_id", "no such")
        assert other.get(f"/v1/devices/{acme_device}/metrics", params={"name": "t"}).status_code == 404
        assert other.get(f"/v1/devices/{acme_device}/metrics/latest").status_code == 404
        assert acme.get(f"/v1/metric-rules/{rule['id']}").json()["enabled"] is True
        assert [m["value"] for m in acme.get(f"/v1/devices/{acme_device}/metrics/latest").json()] == [5.0]


def test_series_for_each_range_and_latest_values(tracker: Tracker) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with _tenant(tracker) as api:
        device, token = _push_device(api, "fridge-1")
        minute = now.replace(second=0) - timedelta(minutes=10)
        points = [{"name": "temperature", "ts": _iso(minute + timedelta(seconds=s)), "value": v}
                  for s, v in ((0, 4.0), (20, 6.0), (40, 8.0), (60, 5.0))]
        # two hours ago (outside the hour, inside the day) and 3 days ago (only in 30 days)
        points += [{"name": "temperature", "ts": _iso(now - timedelta(hours=2)), "value": 10.0},
                   {"name": "battery", "ts": _iso(now - timedelta(minutes=1)), "value": 80.0},
                   {"name": "battery", "ts": _iso(now - timedelta(minutes=2)), "value": 81.0}]
        _ingest(tracker, token, points)
        _ingest(tracker, token, [{"name": "temperature", "ts": _iso(now - timedelta(days=3)), "value": 1.0}])

        hour = api.get(f"/v1/devices/{device}/metrics", params={"name": "temperature", "range": "1h"}).json()
        assert hour["bucket_s"] == 0 and hour["truncated"] is False
        assert [p["value"] for p in hour["points"]] == [4.0, 6.0, 8.0, 5.0]

        day = api.get(f"/v1/devices/{device}/metrics", params={"name": "temperature", "range": "1d"}).json()
        assert day["bucket_s"] == 60
        assert [(p["value"], p["min"], p["max"], p["count"]) for p in day["points"]] == [
            (10.0, 10.0, 10.0, 1), (6.0, 4.0, 8.0, 3), (5.0, 5.0, 5.0, 1)]

        month = api.get(f"/v1/devices/{device}/metrics", params={"name": "temperature", "range": "30d"}).json()
        assert month["bucket_s"] == 3600
        assert [p["count"] for p in month["points"]][0] == 1 and month["points"][0]["value"] == 1.0
        assert sum(p["count"] for p in month["points"]) == 6

        latest = api.get(f"/v1/devices/{device}/metrics/latest").json()
        # the newest by timestamp, even though battery's older point was sent after it
        assert [(m["name"], m["value"]) for m in latest] == [("battery", 80.0), ("temperature", 5.0)]

        assert_error(api.get(f"/v1/devices/{device}/metrics", params={"name": "t", "range": "2h"}), 422, "range")
        assert_error(api.get(f"/v1/devices/{device}/metrics"), 422, "name", "required")
        assert api.get("/v1/devices/999999999/metrics", params={"name": "t"}).status_code == 404
        assert api.get(f"/v1/devices/{device}/metrics", params={"name": "nothing"}).json()["points"] == []
    rows = db_query(tracker, "SELECT count(*) FROM metric_rollups WHERE device_id = $1", device)
    assert rows[0][0] == 6


def test_rule_count_is_capped_per_tenant(tracker: Tracker) -> None:
    with _tenant(tracker) as api, _tenant(tracker) as other:
        tenant_id = api.get("/v1/tenant").json()["id"]
        db_query(tracker, "INSERT INTO metric_rules (tenant_id, tag, metric, operator, threshold) "
                          "SELECT $1, 'fleet', 'm' || i, '>', i FROM generate_series(1, 500) i", tenant_id)
        body = {"metric": "t", "operator": ">", "threshold": 1, "tag": "fleet"}
        assert_error(api.post("/v1/metric-rules", json=body), 409, "body", "at most 500 metric rules")
        assert len(api.get("/v1/metric-rules").json()) == 500
        assert other.post("/v1/metric-rules", json=body).status_code == 201  # another tenant's count
