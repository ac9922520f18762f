"""The check-kind registry (iot.checks) is the one list of kinds, and each kind's options are validated the
same way in the API (and, through the same repository call, the dashboard): bad options are a 422 naming
`options.<field>` and the fix."""

from __future__ import annotations

import asyncio
import json
import re
import typing

import pytest
from cryptography.fernet import Fernet
from test_tracker_api import assert_error, db_query, new_tenant

from iot.checks import KINDS, SCHEDULED
from iot.db import create_pool
from iot.repo.check_secrets import MASK
from iot.sealed import SecretBox
from iot.settings import SecretsKeySettings
from iot.tracker.schemas import Kind
from iot.worker.catalog import load_devices


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_is_named_as_registered_and_its_example_passes(name: str) -> None:
    kind = KINDS[name]
    assert kind.name == name
    assert kind.target_problem(kind.example) is None
    assert kind.options(kind.options_example) == kind.options_example  # examples are already normalised
    assert kind.options({}) == {}


def test_the_api_kind_and_the_database_check_equal_the_registry(tracker) -> None:
    assert typing.get_args(Kind) == tuple(KINDS)
    (row,) = db_query(tracker, "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint "
                               "WHERE conname = 'devices_kind_check'")
    assert sorted(re.findall(r"'(\w+)'::text", row["def"])) == sorted(KINDS)
    assert set(SCHEDULED) == set(KINDS) - {"push"}


@pytest.mark.parametrize(("device", "field", "reason"), [
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"expected_status": ["200-1000"]}},
     "options.expected_status", "range like '200-299'"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"expected_status": [299, "300-200"]}},
     "options.expected_status", "item 1"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"method": "BREW"}},
     "options.method", "'GET'"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"body": "x"}},
     "options", "needs method POST"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"headers": {"Host": "internal"}}},
     "options.headers", "set by the monitor"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"headers": {"X-A": "1\r\nX-B: 2"}}},
     "options.headers", "control character"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"headers": {"bad name": "1"}}},
     "options.headers", "not a header name"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"headers": {f"X-{i}": "v" * 900 for i in range(5)}}},
     "options.headers", "at most 4096 bytes"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"json_path": "$.status"}},
     "options", "json_path and json_equals go together"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"json_path": "$..[", "json_equals": 1}},
     "options.json_path", "not a JSONPath"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"method": "HEAD", "keyword": "ok"}},
     "options", "use GET"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"keyword": "k" * 201}},
     "options.keyword", "at most 200"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "options": {"warn_days": 3}},
     "options.warn_days", "allowed: method, headers"),
    ({"kind": "tcp", "target": "127.0.0.1:9", "options": {"keyword": "x"}},
     "options.keyword", "this kind has no options"),
    ({"kind": "tls", "target": "127.0.0.1:443", "options": {"warn_days": 0}},
     "options.warn_days", "greater than or equal to 1"),
    ({"kind": "tls", "target": "127.0.0.1:99999"}, "target", "port 1-65535"),
    ({"kind": "dns", "target": "pump.example.com", "options": {"record_type": "SRV"}},
     "options.record_type", "'TXT'"),
    ({"kind": "dns", "target": "pump.example.com", "options": {"resolver": "dns.example.com"}},
     "options.resolver", "not an IP address"),
    ({"kind": "dns", "target": "http://pump.example.com/"}, "target", "not a domain name"),
    ({"kind": "dns", "target": "pump.example.com", "options": "A"}, "options", "valid dictionary"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "retries": 0}, "retries", "greater than or equal to 1"),
    ({"kind": "http", "target": "http://127.0.0.1:9/", "retries": 21}, "retries", "less than or equal to 20"),
])
def test_bad_options_are_refused_naming_the_field(tracker, device: dict, field: str, reason: str) -> None:
    with new_tenant(tracker) as client:
        response = client.post("/v1/devices", json={"name": "d1", **device})
        assert_error(response, 422, field, reason)
        # the same check on update, and in a bulk create naming the item
        made = client.post("/v1/devices", json={"name": "plain", "kind": "push"})
        assert made.status_code == 201, made.text
        patched = client.patch(f"/v1/devices/{made.json()['id']}", json={**device})
        assert_error(patched, 422, field, reason)
        bulk = client.post("/v1/devices", json=[{"name": "ok", "kind": "push"}, {"name": "d2", **device}])
        assert_error(bulk, 422, f"devices[1].{field}", reason)


def test_options_and_retries_are_stored_normalised_and_shown(tracker) -> None:
    with new_tenant(tracker) as client:
        created = client.post("/v1/devices", json={
            "name": "api", "kind": "http", "target": "http://127.0.0.1:9/health", "retries": 4,
            "options": {"method": "GET", "expected_status": ["200-299", "304"], "keyword": "ok"}})
        assert created.status_code == 201, created.text
        device_id = created.json()["id"]
        shown = client.get(f"/v1/devices/{device_id}").json()
        # defaults left out, single codes as numbers
        assert shown["options"] == {"expected_status": ["200-299", 304], "keyword": "ok"}
        assert shown["retries"] == 4
        listed = client.get("/v1/devices").json()["items"][0]
        assert listed["options"] == shown["options"]

        # a patch of something else keeps the options; options replace, not merge
        client.patch(f"/v1/devices/{device_id}", json={"interval_s": 120})
        assert client.get(f"/v1/devices/{device_id}").json()["options"] == shown["options"]
        patched = client.patch(f"/v1/devices/{device_id}", json={"options": {"absent_keyword": "error"}, "retries": None})
        assert patched.status_code == 200, patched.text
        assert patched.json()["options"] == {"absent_keyword": "error"} and patched.json()["retries"] is None

        # changing the kind drops the old kind's options (they mean nothing to tls)
        to_tls = client.patch(f"/v1/devices/{device_id}", json={"kind": "tls", "target": "127.0.0.1:443"})
        assert to_tls.status_code == 200, to_tls.text
        assert to_tls.json()["options"] == {}
        warn = client.patch(f"/v1/devices/{device_id}", json={"options": {"warn_days": 30}})
        assert warn.json()["options"] == {"warn_days": 30}

        dns = client.post("/v1/devices", json={"name": "mx", "kind": "dns", "target": "example.com",
                                                 "options": {"record_type": "MX", "resolver": "127.0.0.1:5353"}})
        assert dns.status_code == 201, dns.text
        assert client.get(f"/v1/devices/{dns.json()['id']}").json()["options"] == {
            "record_type": "MX", "resolver": "127.0.0.1:5353"}


def test_a_resolver_on_an_internal_address_is_refused_by_the_egress_policy(tracker) -> None:
    # The tracker of these tests allows loopback only; RFC 1918 stays refused.
    with new_tenant(tracker) as client:
        response = client.post("/v1/devices", json={"name": "mx", "kind": "dns", "target": "example.com",
                                                     "options": {"resolver": "10.0.1.11:53"}})
        assert_error(response, 422, "options.resolver", "public internet")
        tls = client.post("/v1/devices", json={"name": "t", "kind": "tls", "target": "169.254.169.254:443"})
        assert_error(tls, 422, "target", "public internet")


def test_header_values_are_sealed_masked_and_kept_when_sent_back_masked(tracker) -> None:
    box = SecretsKeySettings().secret_box()  # the tracker of the tests runs with the default key
    with new_tenant(tracker) as client:
        created = client.post("/v1/devices", json={
            "name": "keyed", "kind": "http", "target": "http://127.0.0.1:9/",
            "options": {"headers": {"Authorization": "Bearer tok-123", "X-Site": "berlin"}}})
        assert created.status_code == 201, created.text
        device_id = created.json()["id"]
        shown = client.get(f"/v1/devices/{device_id}").json()["options"]
        assert shown == {"headers": {"Authorization": MASK, "X-Site": MASK}}
        assert "tok-123" not in client.get("/v1/devices").text
        (row,) = db_query(tracker, "SELECT options FROM devices WHERE id = $1", device_id)
        stored = json.loads(row["options"]) if isinstance(row["options"], str) else row["options"]
        assert "tok-123" not in json.dumps(stored) and box.open(stored["headers"]["Authorization"]) == "Bearer tok-123"

        # GET -> change one thing -> PATCH back: masked values keep what is stored, new ones are sealed
        patched = client.patch(f"/v1/devices/{device_id}", json={
            "options": {**shown, "headers": {**shown["headers"], "X-Site": "paris"}, "keyword": "ok"}})
        assert patched.status_code == 200, patched.text
        (row,) = db_query(tracker, "SELECT options FROM devices WHERE id = $1", device_id)
        stored = json.loads(row["options"]) if isinstance(row["options"], str) else row["options"]
        assert {k: box.open(v) for k, v in stored["headers"].items()} == {"Authorization": "Bearer tok-123", "X-Site": "paris"}

        # the worker opens them for the monitors; with another key the device is not scheduled
        async def load(key_box):
            pool = await create_pool(tracker.database_url)
            try:
                return await load_devices(pool, key_box)
            finally:
                await pool.close()

        devices = asyncio.run(load(box))
        assert devices[device_id].options["headers"] == {"Authorization": "Bearer tok-123", "X-Site": "paris"}
        assert '"Authorization":"Bearer tok-123"' in devices[device_id].check_fragment()
        assert device_id not in asyncio.run(load(SecretBox([Fernet.generate_key().decode()])))

        # a mask for a header that has no stored value cannot be kept
        unknown = client.patch(f"/v1/devices/{device_id}", json={"options": {"headers": {"X-New": MASK}}})
        assert_error(unknown, 422, "options.headers", "there is none for 'X-New'")
        fresh = client.post("/v1/devices", json={"name": "masked", "kind": "http", "target": "http://127.0.0.1:9/",
                                                 "options": {"headers": {"X-Api-Key": MASK}}})
        assert_error(fresh, 422, "options.headers", "give its value")


def test_the_largest_options_the_model_accepts_fit_the_database_sealed(tracker) -> None:
    headers = {f"X-H{i:02d}": "v" * (4096 // 20 - 5) for i in range(20)}
    with new_tenant(tracker) as client:
        response = client.post("/v1/devices", json={
            "name": "big", "kind": "http", "target": "http://127.0.0.1:9/",
            "options": {"method": "POST", "headers": headers, "body": "b" * 8192, "keyword": "k" * 200,
                        "absent_keyword": "a" * 200, "json_path": "$." + "p" * 198, "json_equals": "e" * 200,
                        "expected_status": [f"{100 + i}-{500 + i}" for i in range(20)]}})
        assert response.status_code == 201, response.text
