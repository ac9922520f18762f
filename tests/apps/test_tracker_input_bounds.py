"""Hostile values against a real `iot tracker`: over-long strings, NUL and control characters, integers past
the database's types, patterns that must match the whole string. Each gets a 4xx naming the field, never a
500 and never a stored row; plus the ingest rules (disabled devices, timestamps) and the response headers."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from iot_processes import Tracker
from test_tracker_api import assert_error, db_query, http_device

_slugs = itertools.count()
BIG = 2**63  # one past bigint
HUGE = 2**64 + 1


def new_tenant(tracker: Tracker) -> httpx.Client:
    return tracker.client(tracker.create_tenant(f"t{next(_slugs)}-bounds"))


def send_json(client: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    """JSON with \\u escapes (httpx would refuse to UTF-8-encode a lone surrogate before sending it)."""
    return client.request(method, path, content=json.dumps(body), headers={"content-type": "application/json"})


# --- case 2: unbounded strings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (http_device("long-url", target="http://10.0.0.5/" + "a" * 2040), "target"),
        ({"name": "long-tcp", "kind": "tcp", "target": "h" * 2049 + ":80"}, "target"),
        ({"name": "long-icmp", "kind": "icmp", "target": ("a" * 60 + ".") * 40}, "target"),
        (http_device("n" * 201), "name"),
    ],
)
def test_over_long_device_strings_are_refused(tracker: Tracker, body: dict, field: str) -> None:
    with new_tenant(tracker) as tenant:
        assert_error(tenant.post("/v1/devices", json=body), 422, field, "at most")
        assert tenant.get("/v1/devices").json()["total"] == 0


def test_an_8_mib_target_never_reaches_the_database(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        response = tenant.post("/v1/devices", json=http_device("huge", target="http://10.0.0.5/" + "a" * (8 << 20)))
        assert response.status_code in (413, 422), response.text[:300]
        assert response.json()["errors"], response.text[:300]
        assert tenant.get("/v1/devices").json()["total"] == 0
        device_id = tenant.post("/v1/devices", json=http_device("ok")).json()["id"]
        patched = tenant.patch(f"/v1/devices/{device_id}", json={"target": "http://10.0.0.5/" + "b" * 4096})
        assert_error(patched, 422, "target", "at most 2048")


def test_over_long_webhook_url_and_secret_are_refused(tracker: Tracker) -> None:
    with new_tenant(tracker) as tenant:
        huge = tenant.put("/v1/webhook", json={"url": "https://example.com/" + "h" * (4 << 20)})
        assert huge.status_code in (413, 422) and huge.json()["errors"], huge.text[:300]
        assert_error(tenant.put("/v1/webhook", json={"url": "https://example.com/" + "h" * 2030}), 422, "url",
                     "at most 2048")
        assert_error(tenant.put("/v1/webhook", json={"url": "https://example.com/h", "secret": "s" * 201}), 422,
                     "secret", "at most 200")
        webhook = tenant.get("/v1/webhook").json()
        assert (webhook["url"], webhook["secret"]) == (None, None)


def test_over_long_tenant_name_is_refused(tracker: Tracker) -> None:
    with tracker.client(tracker.admin_token) as admin:
        assert_error(admin.post("/v1/tenants", json={"slug": "long-name", "name": "n" * 201}), 422, "name", "at most")


# --- case 8: 500s from input ----------------------------------------------------------------------------

NUL = "bad\x00value"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (http_device(NUL), "name"),
        (http_device("nul-target", target="http://10.0.0.5/\x00"), "target"),
        ({"name": "tab-host", "kind": "icmp", "target": "10.0.0.5\t"}, "target"),
        ({"name": "lf-host", "kind": "icmp", "target": "host.example\n"}, "target"),
        (http_device("esc\x1bname"), "name"),
        (http_device("surrogate-\udc80"), "name"),
        (http_device("big-parent", parent_id=BIG), "parent_id"),
        (http_device("huge-parent", parent_id=HUGE), "parent_id"),
        (http_device("neg-parent", parent_id=-1), "parent_id"),
        (http_device("big-checks", anomaly_checks=BIG), "anomaly_checks"),
        (http_device("big-interval", interval_s=HUGE), "interval_s"),
    ],
)
def test_hostile_device_fields_get_422_naming_the_field(tracker: Tracker, body: dict, field: str) -> None:
    with new_tenant(tracker) as tenant:
        assert_error(send_json(tenant, "POST", "/v1/devices", body), 422, field)
        assert tenant.get("/v1/devices").json()["total"] == 0


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"name": NUL}, "name"), ({"target": "http://x/\x00"}, "target"), ({"parent_id": BIG}, "parent_id"),
     ({"grace_s": HUGE}, "grace_s")],
)
def test_hostile_patches_get_422(tracker: Tracker, patch: dict, field: str) -> None:
    with new_tenant(tracker) as tenant:
        device_id = tenant.post("/v1/devices", json=http_device("p")).json()["id"]
        assert_error(send_json(tenant, "PATCH", f"/v1/devices/{device_id}", patch), 422, field)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE", "POST"])
@pytest.mark.parametrize("device_id", [BIG, HUGE, 0, -5])
def test_device_ids_past_bigint_get_422_not_500(tracker: Tracker, method: str, device_id: int) -> None:
    with new_tenant(tracker) as tenant:
        path = f"/v1/devices/{device_id}" + ("/token" if method == "POST" else "")
        assert_error(tenant.request(method, path, json={"enabled": True}), 422, "device_id")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/devices", {"parent_id": BIG}, "parent_id"),
        ("/v1/devices", {"offset": BIG}, "offset"),
        ("/v1/devices", {"q": NUL}, "q"),
        ("/v1/devices", {"region": "frank\x00furt"}, "region"),
        ("/v1/devices", {"region": "frankfurt\n"}, "region"),
        ("/v1/incidents", {"device_id": BIG}, "device_id"),
        ("/v1/incidents", {"before": HUGE}, "before"),
        ("/v1/webhook/deliveries", {"before": BIG}, "before"),
        ("/v1/webhook/deliveries", {"status": "pending\n"}, "status"),
    ],
)
def test_hostile_query_parameters_get_422(tracker: Tracker, path: str, params: dict, field: str) -> None:
    with new_tenant(tracker) as tenant:
        assert_error(tenant.get(path, params=params), 422, field)


def test_forged_cursors_with_nul_or_huge_ids_get_422(tracker: Tracker) -> None:
    import base64

    with new_tenant(tracker) as tenant:
        for sort, value, last_id in (("name", "a\x00b", 1), ("id", BIG, 1), ("name", "a", HUGE)):
            cursor = base64.urlsafe_b64encode(json.dumps([sort, value, last_id]).encode()).decode().rstrip("=")
            assert_error(tenant.get("/v1/devices", params={"sort": sort, "cursor": cursor}), 422, "cursor")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://example.com/\x00"}, "url"),
        ({"url": "https://example.com/h", "secret": "0123456789abcdef\x00"}, "secret"),
        ({"url": "https://exa mple.com/h\r\nX-Injected: 1"}, "url"),
    ],
)
def test_hostile_webhook_settings_get_422(tracker: Tracker, body: dict, field: str) -> None:
    with new_tenant(tracker) as tenant:
        assert_error(send_json(tenant, "PUT", "/v1/webhook", body), 422, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "abc\n"}, "slug"),
        ({"slug": "nul-name", "name": "Acme\x00Inc"}, "name"),
        ({"slug": "ctl-name", "name": "Acme\x07"}, "name"),
        ({"slug": "nul\x00slug"}, "slug"),
    ],
)
def test_hostile_tenant_fields_get_422(tracker: Tracker, body: dict, field: str) -> None:
    with tracker.client(tracker.admin_token) as admin:
        assert_error(send_json(admin, "POST", "/v1/tenants", body), 422, field)
    slug = body["slug"]
    assert not db_query(tracker, "SELECT 1 FROM tenants WHERE slug = $1", slug.replace("\x00", ""))


# --- ingest rules ---------------------------------------------------------------------------------------


def push_device(tracker: Tracker, **extra: Any) -> tuple[int, str]:
    with new_tenant(tracker) as tenant:
        created = tenant.post("/v1/devices", json={"name": "meter", "kind": "push", **extra}).json()
    return created["id"], created["token"]


@pytest.mark.parametrize(
    ("point", "field"),
    [
        ({"name": NUL, "value": 1}, "name"),
        ({"name": "t" * 201, "value": 1}, "name"),
        ({"name": "t", "value": 1, "ts": "0001-01-01T00:00:00Z"}, "ts"),
        ({"name": "t", "value": 1, "ts": (datetime.now(UTC) - timedelta(days=400)).isoformat()}, "ts"),
        ({"name": "t", "value": 1, "ts": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "ts"),
    ],
)
def test_hostile_metric_points_get_422_and_store_nothing(tracker: Tracker, point: dict, field: str) -> None:
    device_id, token = push_device(tracker)
    with tracker.client(token) as device:
        assert_error(send_json(device, "POST", "/v1/metrics", {"points": [{"name": "ok", "value": 1}, point]}), 422,
                     f"points[1].{field}")
    assert db_query(tracker, "SELECT count(*) AS n FROM device_metrics WHERE device_id = $1", device_id)[0]["n"] == 0


def test_a_disabled_device_cannot_send_metrics_or_heartbeats(tracker: Tracker) -> None:
    device_id, token = push_device(tracker, enabled=False)
    with tracker.client(token) as device:
        for response in (device.post("/v1/metrics", json={"name": "t", "value": 1}), device.post("/v1/heartbeat")):
            assert response.status_code == 403, response.text
            assert "disabled" in response.json()["detail"] and "enable" in response.json()["detail"]
    assert db_query(tracker, "SELECT last_seen_at FROM devices WHERE id = $1", device_id)[0]["last_seen_at"] is None


# --- headers --------------------------------------------------------------------------------------------


def test_responses_carrying_keys_are_not_cached_and_hsts_is_set(tracker: Tracker) -> None:
    with tracker.client(tracker.admin_token) as admin:
        created = admin.post("/v1/tenants", json={"slug": f"t{next(_slugs)}-headers"})
    with tracker.client(created.json()["api_key"]) as tenant:
        responses = [created, tenant.post("/v1/devices", json={"name": "p", "kind": "push"}),
                     tenant.put("/v1/webhook", json={"url": "https://example.com/h"}), tenant.get("/v1/webhook"),
                     tenant.post("/v1/tenant/api-key")]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert "no-store" in response.headers.get("cache-control", ""), response.request.url
        assert response.headers.get("strict-transport-security", "").startswith("max-age="), response.request.url
