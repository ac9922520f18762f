"""The `ingest` scope against a real `iot tracker` process: a tenant API key with `ingest` pushes metrics and
heartbeats for any device of its own tenant, naming it in `X-Device-Id`, through the device-token code path
(same validation and limits); a key without `ingest` gets 403, another tenant's device 404, and pushes write
no audit rows. Device tokens keep working unchanged."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import httpx
from iot_processes import Tracker
from test_tracker_api import db_query

_slugs = itertools.count()


def new_tenant(tracker: Tracker) -> str:
    return tracker.create_tenant(f"g{next(_slugs)}-gateway")


def make_key(tracker: Tracker, owner_key: str, scopes: list[str], name: str = "gateway") -> str:
    with tracker.client(owner_key) as c:
        response = c.post("/v1/api-keys", json={"name": name, "scopes": scopes})
    assert response.status_code == 201, response.text
    return response.json()["key"]


def push_device(tracker: Tracker, owner_key: str, name: str) -> tuple[int, str]:
    with tracker.client(owner_key) as c:
        created = c.post("/v1/devices", json={"name": name, "kind": "push"})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["token"]


def push(client: httpx.Client, device_id: int | str | None, body: object, path: str = "/v1/metrics") -> httpx.Response:
    headers = {} if device_id is None else {"X-Device-Id": str(device_id)}
    return client.post(path, json=body, headers=headers)


def latest(tracker: Tracker, owner_key: str, device_id: int) -> dict[str, float]:
    with tracker.client(owner_key) as c:
        response = c.get(f"/v1/devices/{device_id}/metrics/latest")
    assert response.status_code == 200, response.text
    return {m["name"]: m["value"] for m in response.json()}


def stored_points(tracker: Tracker, device_id: int) -> int:
    return db_query(tracker, "SELECT coalesce(sum(count), 0) AS n FROM metric_rollups WHERE device_id = $1",
                    device_id)[0]["n"]


def test_an_ingest_key_pushes_for_two_devices_of_its_tenant(tracker: Tracker) -> None:
    owner = new_tenant(tracker)
    fridge, _ = push_device(tracker, owner, "fridge")
    freezer, _ = push_device(tracker, owner, "freezer")
    gateway = make_key(tracker, owner, ["ingest"])
    with tracker.client(owner) as c:
        audit_before = c.get("/v1/audit-log").json()["items"]
    with tracker.client(gateway) as c:
        one = push(c, fridge, [{"name": "temperature", "value": 4.5}, {"name": "door", "value": 0}])
        assert one.status_code == 200 and one.json() == {"stored": 2}, one.text
        two = push(c, freezer, {"name": "temperature", "value": -18})
        assert two.status_code == 200 and two.json() == {"stored": 1}, two.text
        beat = c.post("/v1/heartbeat")  # the key must name the device
        assert beat.status_code == 422 and beat.json()["errors"][0]["field"] == "X-Device-Id", beat.text
        beat = c.post("/v1/heartbeat", headers={"X-Device-Id": str(freezer)})
        assert beat.status_code == 200 and beat.json() == {"stored": 0}, beat.text
        # `ingest` is only that: it neither reads nor writes the tenant API.
        read = c.get("/v1/devices")
        assert read.status_code == 403 and "'read' scope" in read.json()["detail"], read.text
        write = c.post("/v1/devices", json={"name": "sneaky", "kind": "push"})
        assert write.status_code == 403 and "'write' scope" in write.json()["detail"], write.text
    assert latest(tracker, owner, fridge) == {"temperature": 4.5, "door": 0.0}
    assert latest(tracker, owner, freezer) == {"temperature": -18.0}
    seen = db_query(tracker, "SELECT last_seen_at FROM devices WHERE id = $1", freezer)[0]["last_seen_at"]
    assert seen is not None and datetime.now(UTC) - seen < timedelta(minutes=1)
    with tracker.client(owner) as c:  # pushes are data, not changes: no audit rows
        assert c.get("/v1/audit-log").json()["items"] == audit_before


def test_a_key_without_the_ingest_scope_gets_403_naming_the_scope(tracker: Tracker) -> None:
    owner = new_tenant(tracker)
    device, _ = push_device(tracker, owner, "meter")
    read_write = make_key(tracker, owner, ["read", "write"], name="backend")
    with tracker.client(read_write) as c:
        for path, body in (("/v1/metrics", {"name": "t", "value": 1}), ("/v1/heartbeat", None)):
            response = push(c, device, body, path=path)
            assert response.status_code == 403, (path, response.text)
            detail = response.json()["detail"]
            assert "'ingest' scope" in detail and "'backend'" in detail and "POST /v1/api-keys" in detail, detail
    assert stored_points(tracker, device) == 0
    with tracker.client(owner) as c:
        revoked_id = next(k["id"] for k in c.get("/v1/api-keys").json()["items"] if k["name"] == "backend")
    gateway = make_key(tracker, owner, ["ingest"], name="to-revoke")
    with tracker.client(owner) as c:
        gateway_id = next(k["id"] for k in c.get("/v1/api-keys").json()["items"] if k["name"] == "to-revoke")
        assert gateway_id != revoked_id
        assert c.delete(f"/v1/api-keys/{gateway_id}").status_code in (200, 204)
    with tracker.client(gateway) as c:
        response = push(c, device, {"name": "t", "value": 1})
        assert response.status_code == 401 and "revoked" in response.json()["detail"], response.text


def test_another_tenants_device_or_a_missing_one_is_404_and_nothing_is_stored(tracker: Tracker) -> None:
    owner = new_tenant(tracker)
    mine, _ = push_device(tracker, owner, "mine")
    other_owner = new_tenant(tracker)
    theirs, _ = push_device(tracker, other_owner, "theirs")
    gateway = make_key(tracker, owner, ["read", "write", "ingest"])
    with tracker.client(gateway) as c:
        foreign = push(c, theirs, {"name": "t", "value": 1})
        missing = push(c, 987_654_321, {"name": "t", "value": 1})
        assert foreign.status_code == missing.status_code == 404, (foreign.text, missing.text)
        # the same answer, but for the id: nothing tells the other tenant's device exists
        assert foreign.json()["detail"].replace(str(theirs), "N") == missing.json()["detail"].replace("987654321", "N")
        assert push(c, theirs, None, path="/v1/heartbeat").status_code == 404
        for bad in ("abc", "0", "-1", "1.5", "99999999999999999999"):
            response = push(c, bad, {"name": "t", "value": 1})
            assert response.status_code == 422 and response.json()["errors"][0]["field"] == "X-Device-Id", (bad, response.text)
        assert push(c, mine, {"name": "t", "value": 1}).status_code == 200
    assert stored_points(tracker, theirs) == 0
    assert db_query(tracker, "SELECT last_seen_at FROM devices WHERE id = $1", theirs)[0]["last_seen_at"] is None


def test_device_tokens_keep_working_and_ignore_the_header(tracker: Tracker) -> None:
    owner = new_tenant(tracker)
    device, token = push_device(tracker, owner, "self-reporting")
    other, _ = push_device(tracker, owner, "neighbour")
    with tracker.client(token) as c:
        assert push(c, None, {"name": "t", "value": 7}).json() == {"stored": 1}
        # a device token is its own device: the header cannot redirect its points
        assert push(c, other, {"name": "u", "value": 8}).json() == {"stored": 1}
        assert c.post("/v1/heartbeat").json() == {"stored": 0}
    assert latest(tracker, owner, device) == {"t": 7.0, "u": 8.0}
    assert stored_points(tracker, other) == 0


def test_key_pushes_get_the_same_validation_and_limits(tracker: Tracker) -> None:
    owner = new_tenant(tracker)
    device, _ = push_device(tracker, owner, "bounded")
    gateway = make_key(tracker, owner, ["ingest"])
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with tracker.client(gateway) as c:
        too_many = push(c, device, {"points": [{"name": "t", "value": float(i)} for i in range(10_001)]})
        assert too_many.status_code == 413 and "per request; split" in too_many.text, too_many.text
        skewed = push(c, device, [{"name": "t", "value": 1, "ts": future}])
        assert skewed.status_code == 422 and skewed.json()["errors"][0]["field"] == "points[0].ts", skewed.text
        nameless = push(c, device, {"value": 1})
        assert nameless.status_code == 422, nameless.text
    assert stored_points(tracker, device) == 0
    with tracker.client(owner) as c:
        assert c.patch(f"/v1/devices/{device}", json={"enabled": False}).status_code == 200
    with tracker.client(gateway) as c:
        disabled = push(c, device, {"name": "t", "value": 1})
        assert disabled.status_code == 403 and "disabled" in disabled.json()["detail"], disabled.text


def test_a_device_id_that_is_not_an_id_is_422_naming_the_header(tracker: Tracker) -> None:
    """Whatever a gateway sends in `X-Device-Id` (a huge number, a sign, an exponent, non-ASCII digits, one past
    bigint) is a 422 that names the header, never a 500, and nothing is stored."""
    owner = new_tenant(tracker)
    device, _ = push_device(tracker, owner, "thermo")
    gateway = make_key(tracker, owner, ["ingest"])
    with tracker.client(gateway) as c:
        for raw in ("9" * 5000, f"{device}" + "0" * 30, "-1", "1e3", "\u0663", "9223372036854775808", "", "0", "12 34"):
            # sent as UTF-8 bytes, as a gateway may
            response = c.post("/v1/metrics", json={"name": "t", "value": 1}, headers={"X-Device-Id": raw.encode()})
            assert response.status_code == 422, (raw[:40], response.status_code, response.text[:200])
            assert response.json()["errors"][0]["field"] == "X-Device-Id", response.text
    assert stored_points(tracker, device) == 0
