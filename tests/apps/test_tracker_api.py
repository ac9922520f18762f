"""The tracker API as a real `iot tracker` process: auth, bad input, tenant isolation, bulk create, ingest."""

from __future__ import annotations

import asyncio
import base64
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis
from iot_processes import Tracker

from iot.protocol import DEVICES_VERSION_KEY
from iot.tokens import token_hash

_slugs = itertools.count()


def new_tenant(tracker: Tracker) -> httpx.Client:
    return tracker.client(tracker.create_tenant(f"t{next(_slugs)}-api"))


def db_query(tracker: Tracker, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(tracker.database_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def devices_version(tracker: Tracker) -> int:
    client = redis.Redis.from_url(tracker.redis_url)
    try:
        return int(client.get(DEVICES_VERSION_KEY) or 0)
    finally:
        client.close()


def assert_error(response: httpx.Response, status: int, field: str, reason_part: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    fields = [e["field"] for e in body.get("errors", [])]
    assert field in fields or body["detail"].startswith(f"{field}:"), body
    if reason_part:
        assert reason_part.lower() in body["detail"].lower(), body


def http_device(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "http", "target": "http://127.0.0.1:9/health", **extra}


# --- health and docs ---------------------------------------------------------------------------------


def test_health_and_openapi(tracker: Tracker) -> None:
    with tracker.client() as c:
        health = c.get("/health")
        assert health.status_code == 200 and health.json()["postgres"] == "ok" and health.json()["redis"] == "ok"
        assert c.get("/docs").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
    for path in ("/v1/tenants", "/v1/devices", "/v1/devices/{device_id}", "/v1/incidents", "/v1/metrics",
                 "/v1/heartbeat", "/v1/webhook", "/v1/webhook/deliveries"):
        assert path in paths


# --- tenants -----------------------------------------------------------------------------------------


def test_tenant_creation_needs_the_admin_token(tracker: Tracker) -> None:
    with tracker.client() as anonymous:
        response = anonymous.post("/v1/tenants", json={"slug": "acme"})
        assert response.status_code == 401 and "ADMIN_TOKEN" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    with tracker.client("not-the-admin-token") as wrong:
        assert wrong.post("/v1/tenants", json={"slug": "acme"}).status_code == 401
    with tracker.client("some-tenant-key") as wrong:
        assert wrong.post("/v1/tenants", json={"slug": "acme"}).status_code == 401


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"slug": "www"}, "slug", "reserved"),
        ({"slug": "tracker"}, "slug", "reserved"),
        ({"slug": "tokyo"}, "slug", "reserved"),  # a monitor name (MONITOR_NAMES)
        ({"slug": "Bad_Slug"}, "slug", "DNS label"),
        ({"slug": "-acme"}, "slug", "DNS label"),
        ({}, "slug", "required"),
        ({"slug": "ok-name", "plan": "gold"}, "plan", "extra"),
    ],
)
def test_tenant_bad_input(tracker: Tracker, body: dict, field: str, reason: str) -> None:
    with tracker.client(tracker.admin_token) as admin:
        assert_error(admin.post("/v1/tenants", json=body), 422, field, reason)


def test_tenant_slug_taken_and_key_rotation(tracker: Tracker) -> None:
    key = tracker.create_tenant("rotating")
    with tracker.client(tracker.admin_token) as admin:
        assert_error(admin.post("/v1/tenants", json={"slug": "rotating"}), 409, "slug", "taken")
    with tracker.client(key) as tenant:
        me = tenant.get("/v1/tenant").json()
        assert me["slug"] == "rotating" and me["devices_by_state"] == {"up": 0, "down": 0, "degraded": 0, "unknown": 0}
        new_key = tenant.post("/v1/tenant/api-key").json()["api_key"]
        assert tenant.get("/v1/tenant").status_code == 401  # the old key is dead at once
    with tracker.client(new_key) as tenant:
        assert tenant.get("/v1/tenant").json()["slug"] == "rotating"
    stored = db_query(tracker, "SELECT api_key_hash FROM tenants WHERE slug = 'rotating'")[0]["api_key_hash"]
    assert new_key not in stored and len(stored) == 64  # only the sha256 is stored


# --- 401 on every tenant and device endpoint ---------------------------------------------------------

TENANT_ENDPOINTS = [
    ("GET", "/v1/tenant", None), ("POST", "/v1/tenant/api-key", None),
    ("POST", "/v1/devices", http_device("x")), ("GET", "/v1/devices", None), ("GET", "/v1/devices/1", None),
    ("PATCH", "/v1/devices/1", {"enabled": False}), ("DELETE", "/v1/devices/1", None),
    ("POST", "/v1/devices/1/token", None), ("GET", "/v1/incidents", None),
    ("PUT", "/v1/webhook", {"url": "https://example.com/h"}), ("GET", "/v1/webhook", None),
    ("GET", "/v1/webhook/deliveries", None), ("GET", "/v1/regions", None),
]
DEVICE_ENDPOINTS = [("POST", "/v1/metrics", {"name": "t", "value": 1}), ("POST", "/v1/heartbeat", None)]


@pytest.mark.parametrize(("method", "path", "body"), TENANT_ENDPOINTS + DEVICE_ENDPOINTS)
def test_missing_or_wrong_key_is_401(tracker: Tracker, method: str, path: str, body: Any) -> None:
    for token in (None, "iotk_wrong", tracker.admin_token):
        with tracker.client(token) as c:
            response = c.request(method, path, json=body)
            assert response.status_code == 401, (token, response.text)
            assert response.headers["www-authenticate"] == "Bearer"


def test_tenant_key_is_not_a_device_token_and_vice_versa(tracker: Tracker) -> None:
    api_key = tracker.create_tenant("keys-apart")
    with tracker.client(api_key) as tenant:
        token = tenant.post("/v1/devices", json={"name": "p", "kind": "push"}).json()["token"]
        # The tenant key (scopes read, write, ingest) may push only for a device it names (test_ingest_api_keys).
        unnamed = tenant.post("/v1/metrics", json={"name": "t", "value": 1})
        assert unnamed.status_code == 422 and unnamed.json()["errors"][0]["field"] == "X-Device-Id", unnamed.text
    with tracker.client(token) as device:
        assert device.get("/v1/devices").status_code == 401
        assert device.post("/v1/heartbeat").status_code == 200


# --- bad input on device endpoints -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"name": "a", "target": "http://x/"}, "kind", "required"),
        ({"name": "a", "kind": "smtp", "target": "x"}, "kind", "'http'"),
        ({"name": "a", "kind": "http"}, "target", "required for kind 'http'"),
        ({"name": "a", "kind": "http", "target": "ftp://x/"}, "target", "http(s) URL"),
        ({"name": "a", "kind": "tcp", "target": "10.0.0.5"}, "target", "host:port"),
        ({"name": "a", "kind": "tcp", "target": "10.0.0.5:70000"}, "target", "1-65535"),
        ({"name": "a", "kind": "tcp", "target": "10.0.0.5:\u00b2"}, "target", "1-65535"),
        ({"name": "a", "kind": "tcp", "target": "10.0.0.5:\u0664\u0664\u0663"}, "target", "1-65535"),
        ({"name": "a", "kind": "http", "target": "http://x.example:0/"}, "target", "port 1-65535"),
        ({"name": "a", "kind": "icmp", "target": "not a host!"}, "target", "hostname or IP"),
        ({"name": "a", "kind": "push", "target": "http://x/"}, "target", "no target"),
        (http_device("a", interval_s=1), "interval_s", "greater than or equal to 5"),
        (http_device("a", timeout_ms=50), "timeout_ms", "100"),
        (http_device("a", interval_s=5, timeout_ms=6000), "timeout_ms", "interval"),
        (http_device("a", grace_s=1), "grace_s", "5"),
        (http_device("a", colour="red"), "colour", "extra"),
        (http_device(""), "name", "at least 1"),
        (http_device("a", parent_id=987654321), "parent_id", "no device 987654321"),
        ([http_device("a"), http_device("b"), {"name": "c", "kind": "http"}], "devices[2].kind", "", ),
        ([http_device("a"), http_device("b"), {"name": "c", "kind": "tcp", "target": "x"}], "devices[2].target", "host:port"),
        ({"devices": [http_device("a"), http_device("a")]}, "devices[1].name", "unique"),
        ({"devices": [http_device("a", interval_s="often")]}, "devices[0].interval_s", "integer"),
        ({"devices": []}, "devices", "empty"),
        ([], "devices", "empty"),
        ("just a string", "body", ""),
    ],
)
def test_create_device_bad_input(tracker: Tracker, body: Any, field: str, reason: str) -> None:
    with new_tenant(tracker) as tenant:
        if field == "devices[2].kind":
            body[2]["kind"] = "gopher"
            reason = "'http'"
        if field == "body":
            response = tenant.post("/v1/devices", json=body)
            assert response.status_code == 422 and response.json()["errors"], response.text
            return
        assert_error(tenant.post("/v1/devices", json=body), 422, field, reason)
        assert tenant.get("/v1/devices").json()["total"] == 0  # all or nothing


def test_create_device_invalid_json_and_name_conflict(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        response = tenant.post("/v1/devices", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422 and "JSON" in response.json()["detail"]
        assert tenant.post("/v1/devices", json=http_device("dup")).status_code == 201
        assert_error(tenant.post("/v1/devices", json=[http_device("new"), http_device("dup")]), 409,
                     "devices[1].name", "already exists")
        assert tenant.get("/v1/devices").json()["total"] == 1


def test_too_many_devices_in_one_request_is_413(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        response = tenant.post("/v1/devices", json=[{"name": f"d{i}", "kind": "push"} for i in range(10_001)])
        assert response.status_code == 413 and "at most 10000" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"state": "sideways"}, "state"), ({"limit": 0}, "limit"), ({"limit": 5000}, "limit"),
     ({"offset": -1}, "offset"), ({"sort": "colour"}, "sort"), ({"order": "up"}, "order"),
     ({"cursor": "garbage!"}, "cursor"),
     # well-formed but forged: the sort key has the wrong type for the sort
     ({"sort": "name", "cursor": base64.urlsafe_b64encode(b'["name", 5, 1]').decode()}, "cursor"),
     ({"sort": "state", "cursor": base64.urlsafe_b64encode(b'["state", {"a": 1}, 1]').decode()}, "cursor"),
     ({"region_state": "up"}, "region_state"), ({"kind": "smtp"}, "kind")],
)
def test_list_devices_bad_query(tracker: Tracker, params: dict, field: str) -> None:
    with new_tenant(tracker) as tenant:
        assert_error(tenant.get("/v1/devices", params=params), 422, field)


def test_device_id_must_be_an_integer(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        for method in ("GET", "PATCH", "DELETE"):
            assert_error(tenant.request(method, "/v1/devices/abc", json={"enabled": True}), 422, "device_id")


@pytest.mark.parametrize(
    ("patch", "field", "reason"),
    [
        ({"interval_s": 2}, "interval_s", "5"),
        ({"name": None}, "name", "null"),
        ({"enabled": "maybe"}, "enabled", "boolean"),
        ({"target": "gopher://x"}, "target", "http(s) URL"),
        ({"kind": "tcp"}, "target", "give a target"),
        ({"colour": "red"}, "colour", "extra"),
        ({}, "body", "no field"),
        ({"parent_id": 987654321}, "parent_id", "no device"),
    ],
)
def test_patch_device_bad_input(tracker: Tracker, patch: dict, field: str, reason: str) -> None:
    with new_tenant(tracker) as tenant:
        device_id = tenant.post("/v1/devices", json=http_device("p")).json()["id"]
        assert_error(tenant.patch(f"/v1/devices/{device_id}", json=patch), 422, field, reason)
        assert tenant.get(f"/v1/devices/{device_id}").json()["target"] == "http://127.0.0.1:9/health"


def test_parent_cycles_and_self_parent_are_refused(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        gateway = tenant.post("/v1/devices", json=http_device("gw")).json()["id"]
        child = tenant.post("/v1/devices", json=http_device("child", parent_id=gateway)).json()["id"]
        assert_error(tenant.patch(f"/v1/devices/{gateway}", json={"parent_id": gateway}), 422, "parent_id", "own parent")
        assert_error(tenant.patch(f"/v1/devices/{gateway}", json={"parent_id": child}), 422, "parent_id", "cycle")
        listed = tenant.get("/v1/devices", params={"parent_id": gateway}).json()
        assert [d["id"] for d in listed["items"]] == [child]


def test_webhook_bad_input_and_settings(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        assert_error(tenant.put("/v1/webhook", json={"url": "not a url"}), 422, "url", "http(s) URL")
        assert_error(tenant.put("/v1/webhook", json={"url": "https://h.example/x", "secret": "short"}), 422, "secret")
        assert_error(tenant.put("/v1/webhook", json={}), 422, "url", "required")
        assert_error(tenant.get("/v1/webhook/deliveries", params={"status": "lost"}), 422, "status")
        assert_error(tenant.get("/v1/webhook/deliveries", params={"limit": 0}), 422, "limit")
        saved = tenant.put("/v1/webhook", json={"url": "https://h.example/x"}).json()
        assert saved["url"] == "https://h.example/x" and len(saved["secret"]) >= 32
        assert tenant.get("/v1/webhook").json() == saved
        assert tenant.get("/v1/webhook/deliveries").json() == {"items": [], "next_before": None}
        assert tenant.put("/v1/webhook", json={"url": None}).json() == {
            "url": None, "secret": None, "previous_secret_expires_at": None}


def test_regions_show_health(tracker: Tracker) -> None:
    db_query(tracker, "INSERT INTO regions (name, healthy, reason) VALUES ('frankfurt', true, NULL), "
             "('tokyo', false, 'canaries failing') ON CONFLICT (name) DO NOTHING")
    with new_tenant(tracker) as tenant:
        regions = {r["name"]: r for r in tenant.get("/v1/regions").json()}
    assert regions["frankfurt"]["healthy"] is True
    assert regions["tokyo"]["healthy"] is False and regions["tokyo"]["reason"] == "canaries failing"


def test_incidents_bad_query(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        assert_error(tenant.get("/v1/incidents", params={"limit": 0}), 422, "limit")
        assert_error(tenant.get("/v1/incidents", params={"open": "perhaps"}), 422, "open")
        assert_error(tenant.get("/v1/incidents", params={"device_id": "x"}), 422, "device_id")


# --- device lifecycle --------------------------------------------------------------------------------


def test_device_lifecycle_bumps_the_devices_version(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        before = devices_version(tracker)
        created = tenant.post("/v1/devices", json={"name": "sensor", "kind": "tcp", "target": "127.0.0.5:502"})
        assert created.status_code == 201
        device_id = created.json()["id"]
        assert created.json()["token"].startswith("iotd_")
        assert devices_version(tracker) == before + 1

        detail = tenant.get(f"/v1/devices/{device_id}").json()
        assert detail["state"] == "unknown" and detail["regions"] == [] and detail["interval_s"] == 60

        patched = tenant.patch(f"/v1/devices/{device_id}", json={"interval_s": 30, "kind": "icmp", "target": "127.0.0.5"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["kind"] == "icmp" and patched.json()["interval_s"] == 30
        assert devices_version(tracker) == before + 2

        to_push = tenant.patch(f"/v1/devices/{device_id}", json={"kind": "push"}).json()
        assert to_push["target"] is None and to_push["grace_s"] == 90  # default: three intervals

        assert tenant.delete(f"/v1/devices/{device_id}").status_code == 204
        assert devices_version(tracker) == before + 4
        assert tenant.get(f"/v1/devices/{device_id}").status_code == 404
        assert tenant.delete(f"/v1/devices/{device_id}").status_code == 404


def test_device_detail_shows_each_region_and_latency_sort(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        ids = [d["id"] for d in tenant.post("/v1/devices", json=[http_device(f"r{i}") for i in range(3)]).json()["devices"]]
        now = datetime.now(UTC)
        rows = [(ids[0], "frankfurt", "up", True, 12.5, None), (ids[0], "tokyo", "down", False, None, "timeout"),
                (ids[1], "frankfurt", "up", True, 3.0, None), (ids[2], "frankfurt", "up", True, 40.0, None)]
        for device_id, region, state, ok, latency, error in rows:
            db_query(tracker, "INSERT INTO device_region_state (device_id, region, state, last_ok, last_latency_ms,"
                     " last_error, last_checked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                     device_id, region, state, ok, latency, error, now)
        detail = tenant.get(f"/v1/devices/{ids[0]}").json()
        by_region = {r["region"]: r for r in detail["regions"]}
        assert by_region["frankfurt"]["last_latency_ms"] == 12.5 and by_region["frankfurt"]["state"] == "up"
        assert by_region["tokyo"]["last_ok"] is False and by_region["tokyo"]["last_error"] == "timeout"
        assert detail["latency_ms"] == 12.5

        fastest = tenant.get("/v1/devices", params={"sort": "latency"}).json()["items"]
        assert [d["id"] for d in fastest] == [ids[1], ids[0], ids[2]]
        slowest = tenant.get("/v1/devices", params={"sort": "latency", "order": "desc", "limit": 1}).json()
        assert slowest["items"][0]["id"] == ids[2]
        second = tenant.get("/v1/devices", params={"sort": "latency", "order": "desc", "limit": 1,
                                                   "cursor": slowest["next_cursor"]}).json()
        assert second["items"][0]["id"] == ids[0]
        seen_down_in_tokyo = tenant.get("/v1/devices", params={"region": "tokyo", "region_state": "down"}).json()
        assert [d["id"] for d in seen_down_in_tokyo["items"]] == [ids[0]]


def test_bulk_create_5000_devices_in_one_request_and_page_through_them(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        body = {"devices": [{"name": f"dev-{i:05d}", "kind": "tcp", "target": f"127.1.{i // 250}.{i % 250}:502",
                             "interval_s": 30} for i in range(5000)]}
        response = tenant.post("/v1/devices", json=body)
        assert response.status_code == 201, response.text[:500]
        created = response.json()["devices"]
        assert len(created) == 5000
        assert len({d["id"] for d in created}) == 5000 and len({d["token"] for d in created}) == 5000
        assert [d["name"] for d in created] == [d["name"] for d in body["devices"]]

        seen: list[int] = []
        cursor = None
        while True:
            params = {"limit": 1000, "sort": "name", **({"cursor": cursor} if cursor else {})}
            page = tenant.get("/v1/devices", params=params).json()
            assert page["total"] == 5000
            seen += [d["id"] for d in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [d["id"] for d in created]  # names sort like creation order here

        unknown = tenant.get("/v1/devices", params={"state": "unknown", "limit": 1}).json()
        assert unknown["total"] == 5000
        assert tenant.get("/v1/devices", params={"state": "down"}).json()["total"] == 0
        text = tenant.get("/v1/devices", params={"q": "dev-0499"}).json()
        assert sorted(d["name"] for d in text["items"]) == [f"dev-0499{i}" for i in range(10)]
        by_offset = tenant.get("/v1/devices", params={"offset": 4998, "limit": 10}).json()
        assert [d["name"] for d in by_offset["items"]] == ["dev-04998", "dev-04999"]


# --- tenant isolation --------------------------------------------------------------------------------


def test_tenant_b_cannot_see_or_change_tenant_a_devices(tracker: Tracker) -> None:
    a, b = new_tenant(tracker), new_tenant(tracker)
    with a, b:
        a_device = a.post("/v1/devices", json=http_device("a-only")).json()["id"]
        b_device = b.post("/v1/devices", json=http_device("b-only")).json()["id"]
        tenant_a = db_query(tracker, "SELECT tenant_id FROM devices WHERE id = $1", a_device)[0]["tenant_id"]
        db_query(tracker, "INSERT INTO incidents (tenant_id, device_id, kind, summary) VALUES ($1, $2, 'down', 'a is down')",
                 tenant_a, a_device)
        missing = 10**12

        for device_id in (a_device, missing):  # a foreign id answers exactly like a missing one
            responses = [b.get(f"/v1/devices/{device_id}"), b.patch(f"/v1/devices/{device_id}", json={"enabled": False}),
                         b.delete(f"/v1/devices/{device_id}"), b.post(f"/v1/devices/{device_id}/token")]
            assert [r.status_code for r in responses] == [404] * 4
            assert {r.json()["detail"] for r in responses} == {f"no such device: {device_id}"}
        foreign_parent = b.post("/v1/devices", json=http_device("sneaky", parent_id=a_device))
        assert_error(foreign_parent, 422, "parent_id", f"no device {a_device} in this tenant")
        assert_error(b.patch(f"/v1/devices/{b_device}", json={"parent_id": a_device}), 422, "parent_id",
                     f"no device {a_device} in this tenant")

        assert [d["id"] for d in b.get("/v1/devices").json()["items"]] == [b_device]
        assert b.get("/v1/devices", params={"q": "a-only"}).json()["total"] == 0
        assert b.get("/v1/incidents").json()["items"] == []
        assert b.get("/v1/incidents", params={"device_id": a_device}).json()["items"] == []
        # ... and A still has its device, unchanged, with its incident.
        a_view = a.get(f"/v1/devices/{a_device}").json()
        assert a_view["enabled"] is True and a_view["name"] == "a-only"
        incidents = a.get("/v1/incidents").json()["items"]
        assert [(i["device_id"], i["summary"], i["device_name"]) for i in incidents] == [(a_device, "a is down", "a-only")]
        assert a.get("/v1/incidents", params={"open": "true"}).json()["items"][0]["resolved_at"] is None


# --- ingest ------------------------------------------------------------------------------------------


def test_metrics_single_list_and_batch_ingest(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        created = tenant.post("/v1/devices", json={"name": "meter", "kind": "push", "interval_s": 10}).json()
    device_id, token = created["id"], created["token"]
    t0 = datetime.now(UTC) - timedelta(hours=2)
    with tracker.client(token) as device:
        assert device.post("/v1/metrics", json={"name": "temp", "value": 21.5}).json() == {"stored": 1}
        assert device.post("/v1/metrics", json=[{"name": "temp", "value": 1}, {"name": "rh", "value": 2}]).json() == {"stored": 2}
        batch = {"points": [{"name": "power_w", "value": i * 0.5, "ts": (t0 + timedelta(seconds=i)).isoformat()}
                            for i in range(5000)]}
        response = device.post("/v1/metrics", json=batch)
        assert response.status_code == 200 and response.json() == {"stored": 5000}

        assert_error(device.post("/v1/metrics", json={"points": [{"name": "t", "value": 1}, {"name": "t", "value": "hot"}]}),
                     422, "points[1].value", "number")
        assert_error(device.post("/v1/metrics", json=[{"name": "t"}]), 422, "points[0].value", "required")
        assert_error(device.post("/v1/metrics", json={"name": "", "value": 1}), 422, "name")
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert_error(device.post("/v1/metrics", json={"name": "t", "value": 1, "ts": future}), 422, "points[0].ts", "future")
        assert_error(device.post("/v1/metrics", json={"name": "t", "value": 1, "ts": "2026-01-01T00:00:00"}), 422,
                     "points[0].ts", "timezone")
        too_many = device.post("/v1/metrics", json=[{"name": "t", "value": 1}] * 10_001)
        assert too_many.status_code == 413

    rows = db_query(tracker, "SELECT name, count(*) AS n, sum(value) AS s FROM device_metrics WHERE device_id = $1 "
                    "GROUP BY name ORDER BY name", device_id)
    assert {r["name"]: r["n"] for r in rows} == {"power_w": 5000, "rh": 1, "temp": 2}
    assert {r["name"]: r["s"] for r in rows}["power_w"] == sum(i * 0.5 for i in range(5000))
    assert db_query(tracker, "SELECT min(ts) AS t FROM device_metrics WHERE device_id = $1", device_id)[0]["t"] == t0
    seen_db = db_query(tracker, "SELECT last_seen_at FROM devices WHERE id = $1", device_id)[0]["last_seen_at"]
    assert abs(seen_db - datetime.now(UTC)) < timedelta(seconds=60)


def test_heartbeat_moves_last_seen_forward(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        created = tenant.post("/v1/devices", json={"name": "beacon", "kind": "push"}).json()
    with tracker.client(created["token"]) as device:
        assert device.post("/v1/heartbeat").json() == {"stored": 0}
        first = db_query(tracker, "SELECT last_seen_at FROM devices WHERE id = $1", created["id"])[0]["last_seen_at"]
        assert device.post("/v1/heartbeat").status_code == 200
        second = db_query(tracker, "SELECT last_seen_at FROM devices WHERE id = $1", created["id"])[0]["last_seen_at"]
    assert first is not None and second > first


def test_rotated_device_token_replaces_the_old_one(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        created = tenant.post("/v1/devices", json={"name": "rot", "kind": "push"}).json()
        new_token = tenant.post(f"/v1/devices/{created['id']}/token").json()["token"]
    with tracker.client(new_token) as device:
        assert device.post("/v1/heartbeat").status_code == 200
    with tracker.client(created["token"]) as old_device:  # never used, so not cached: refused at once
        assert old_device.post("/v1/heartbeat").status_code == 401
    stored = db_query(tracker, "SELECT token_hash FROM devices WHERE id = $1", created["id"])[0]["token_hash"]
    assert stored == token_hash(new_token)
