"""Per-tenant quotas against a real `iot tracker` (defaults from settings, overrides in the database):
devices, scheduled checks per second and metric points per second. Over quota is a 429 with Retry-After
that names the quota and the fix, and one tenant at its limit never slows or blocks another."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterator

import httpx
import pytest
from iot_processes import Tracker, start_tracker
from test_tracker_api import db_query

from iot.db.migrate import migrate

_slugs = itertools.count()
QUOTAS = {"QUOTA_DEVICES": 5, "QUOTA_CHECKS_PER_SECOND": 1, "QUOTA_POINTS_PER_SECOND": 50}


@pytest.fixture(scope="module")
def tracker(postgres_server, redis_server, tmp_path_factory) -> Iterator[Tracker]:
    database_url = postgres_server.create_database(f"quotas_{os.getpid()}")
    asyncio.run(migrate(database_url))
    running = start_tracker(database_url, redis_server.url, tmp_path_factory.mktemp("tracker"), **QUOTAS)
    yield running
    running.process.stop()


def tenant(tracker: Tracker) -> tuple[str, httpx.Client]:
    slug = f"q{next(_slugs)}"
    return slug, tracker.client(tracker.create_tenant(slug))


def push(i: int) -> dict:
    return {"name": f"push-{i}", "kind": "push"}


def checked(i: int, interval_s: int = 60) -> dict:
    return {"name": f"http-{i}", "kind": "http", "target": f"http://127.0.0.{i + 1}/", "interval_s": interval_s}


def assert_quota(response: httpx.Response, field: str, words: tuple[str, ...]) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["errors"][0]["field"] == field, body
    for word in words:
        assert word in body["detail"], body


def set_quotas(tracker: Tracker, slug: str, **quotas: object) -> httpx.Response:
    with tracker.client(tracker.admin_token) as admin:
        return admin.put(f"/v1/tenants/{slug}/quotas", json=quotas)


def test_device_quota_refuses_the_device_past_the_limit_and_an_override_raises_it(tracker: Tracker) -> None:
    slug, client = tenant(tracker)
    _, other = tenant(tracker)
    with client, other:
        assert client.post("/v1/devices", json=[push(i) for i in range(4)]).status_code == 201
        assert_quota(client.post("/v1/devices", json=[push(4), push(5)]), "devices", ("5 devices", "delete"))
        assert client.get("/v1/devices").json()["total"] == 4  # all or nothing
        assert client.post("/v1/devices", json=push(4)).status_code == 201
        assert_quota(client.post("/v1/devices", json=push(5)), "devices", ("5 devices",))
        assert other.post("/v1/devices", json=[push(i) for i in range(5)]).status_code == 201

        assert set_quotas(tracker, slug, max_devices=7).status_code == 200
        assert client.post("/v1/devices", json=[push(5), push(6)]).status_code == 201
        assert_quota(client.post("/v1/devices", json=push(7)), "devices", ("7 devices",))
        usage = client.get("/v1/tenant/quotas").json()
        assert usage["devices"] == {"limit": 7, "used": 7}
    rows = db_query(tracker, "SELECT max_devices FROM tenant_quotas q JOIN tenants t ON t.id = q.tenant_id "
                             "WHERE t.slug = $1", slug)
    assert [r["max_devices"] for r in rows] == [7]


def test_check_rate_quota_counts_enabled_scheduled_devices(tracker: Tracker) -> None:
    slug, client = tenant(tracker)
    with client:
        assert set_quotas(tracker, slug, max_devices=100).status_code == 200
        # 4 devices every 5 s = 0.8 checks/s of the 1/s quota; push devices are not checked by monitors.
        ids = [d["id"] for d in client.post("/v1/devices", json=[checked(i, 5) for i in range(4)]).json()["devices"]]
        assert client.post("/v1/devices", json=[push(i) for i in range(10)]).status_code == 201
        assert_quota(client.post("/v1/devices", json=[checked(4, 5), checked(5, 5)]), "devices",
                     ("checks per second", "interval"))
        assert client.post("/v1/devices", json=checked(4, 10)).status_code == 201  # 0.9/s
        fast = client.post("/v1/devices", json=checked(5, 60))  # 0.9166.../s: still fits
        assert fast.status_code == 201
        assert_quota(client.patch(f"/v1/devices/{fast.json()['id']}", json={"interval_s": 5}), "interval_s",
                     ("checks per second",))
        # Disabling frees rate; re-enabling past the quota is refused.
        assert client.patch(f"/v1/devices/{ids[0]}", json={"enabled": False}).status_code == 200
        assert client.patch(f"/v1/devices/{fast.json()['id']}", json={"interval_s": 5}).status_code == 200
        assert_quota(client.patch(f"/v1/devices/{ids[0]}", json={"enabled": True}), "enabled",
                     ("checks per second",))
        # Lengthening an interval is always allowed, even over the quota.
        assert set_quotas(tracker, slug, max_devices=100, checks_per_second=0.1).status_code == 200
        assert client.patch(f"/v1/devices/{ids[1]}", json={"interval_s": 6}).status_code == 200


def test_points_per_second_quota_is_per_tenant_with_retry_after(tracker: Tracker) -> None:
    _, noisy_admin = tenant(tracker)
    _, quiet_admin = tenant(tracker)
    with noisy_admin, quiet_admin:
        noisy = noisy_admin.post("/v1/devices", json=push(0)).json()["token"]
        quiet = quiet_admin.post("/v1/devices", json=push(0)).json()["token"]
    batch = {"points": [{"name": "t", "value": float(i)} for i in range(60)]}
    with tracker.client(noisy) as device, tracker.client(quiet) as calm:
        statuses = [device.post("/v1/metrics", json=batch) for _ in range(4)]
        assert statuses[0].status_code == 200
        refused = [r for r in statuses if r.status_code == 429]
        assert refused, [r.status_code for r in statuses]
        assert_quota(refused[0], "points", ("points per second",))
        # The quiet tenant is not affected by the noisy one's limit.
        assert calm.post("/v1/metrics", json=batch).status_code == 200
        assert calm.post("/v1/heartbeat").status_code == 200
        wait = int(refused[0].headers["retry-after"])
        time.sleep(wait + 0.2)
        assert device.post("/v1/metrics", json=batch).status_code == 200
        # More points than the quota allows at once can never pass: it says to split the batch.
        too_big = device.post("/v1/metrics", json={"points": [{"name": "t", "value": 1.0}] * 500})
        assert_quota(too_big, "points", ("at once", "smaller"))


def test_ingest_key_pushes_draw_on_the_same_points_quota_as_device_tokens(tracker: Tracker) -> None:
    _, admin = tenant(tracker)
    with admin:
        first = admin.post("/v1/devices", json=push(0)).json()
        second = admin.post("/v1/devices", json=push(1)).json()
        gateway = admin.post("/v1/api-keys", json={"name": "gateway", "scopes": ["ingest"]}).json()["key"]
    batch = {"points": [{"name": "t", "value": float(i)} for i in range(60)]}
    with tracker.client(gateway) as relay, tracker.client(second["token"]) as device:
        assert relay.post("/v1/metrics", json=batch, headers={"X-Device-Id": str(first["id"])}).status_code == 200
        statuses = [device.post("/v1/metrics", json=batch),
                    relay.post("/v1/metrics", json=batch, headers={"X-Device-Id": str(second["id"])})]
        refused = [r for r in statuses if r.status_code == 429]
        assert refused, [r.status_code for r in statuses]
        assert_quota(refused[-1], "points", ("points per second",))
        too_big = relay.post("/v1/metrics", json={"points": [{"name": "t", "value": 1.0}] * 500},
                             headers={"X-Device-Id": str(first["id"])})
        assert_quota(too_big, "points", ("at once", "smaller"))


def test_quota_overrides_are_admin_only_and_validated(tracker: Tracker) -> None:
    slug, client = tenant(tracker)
    with client:
        assert client.put(f"/v1/tenants/{slug}/quotas", json={"max_devices": 10**6}).status_code == 401
    response = set_quotas(tracker, slug, max_devices=-1)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "max_devices"
    assert set_quotas(tracker, "no-such-tenant", max_devices=1).status_code == 404
