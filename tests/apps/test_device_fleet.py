"""Organising a fleet through the tenant API (issue 15): the filtered list as CSV (streamed, formula-safe,
round-tripping through the CSV import), bulk actions on a filtered selection, the name search that picks
a parent. A real tracker process on a real Postgres."""

from __future__ import annotations

import csv
import io

from test_tracker_api import assert_error, devices_version, http_device, new_tenant

from iot.dashboard.csv_import import parse_devices_csv


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_export_has_the_import_columns_and_follows_the_filters(tracker) -> None:
    with new_tenant(tracker) as client, new_tenant(tracker) as other:
        client.post("/v1/devices", json={"devices": [
            http_device("pump-1", tags=["env:prod", "site/berlin"], interval_s=30),
            {**http_device("pump-2", tags=["env:dev"], enabled=False), "retries": 3,
             "options": {"expected_status": ["200-299"], "headers": {"Authorization": "Bearer s3cret-token"}}},
            {"name": "beacon-1", "kind": "push", "interval_s": 20, "tags": ["env:prod"]},
        ]}).raise_for_status()
        other.post("/v1/devices", json=http_device("foreign-1", tags=["env:prod"])).raise_for_status()
        ids = {d["name"]: d["id"] for d in client.get("/v1/devices").json()["items"]}
        client.patch(f"/v1/devices/{ids['pump-2']}", json={"parent_id": ids["pump-1"]}).raise_for_status()
        response = client.get("/v1/devices.csv", params={"sort": "name"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"].startswith("attachment; filename=")
        rows = rows_of(response.text)
        assert rows == [
            ["name", "kind", "target", "interval_s", "timeout_ms", "grace_s", "enabled", "tags", "retries", "options",
             "parent"],
            ["beacon-1", "push", "", "20", "5000", "60", "true", "env:prod", "", "", ""],
            ["pump-1", "http", "http://127.0.0.1:9/health", "30", "5000", "", "true", "env:prod;site/berlin", "", "", ""],
            ["pump-2", "http", "http://127.0.0.1:9/health", "60", "5000", "", "false", "env:dev", "3",
             '{"expected_status": ["200-299"], "headers": {"Authorization": "•••"}}', "pump-1"],
        ]
        assert "s3cret-token" not in response.text  # header values are secrets: exported masked
        prod = rows_of(client.get("/v1/devices.csv", params={"tag": "env:prod", "kind": "http"}).text)
        assert [r[0] for r in prod[1:]] == ["pump-1"]  # never another tenant's foreign-1
        assert [r[0] for r in rows_of(client.get("/v1/devices.csv", params={"q": "pump", "order": "desc",
                                                                             "sort": "name"}).text)[1:]] == ["pump-2", "pump-1"]
        # The export is what the import reads: same devices back, field by field.
        parsed = parse_devices_csv(response.text)
        assert parsed.problems == []
        assert [(d["name"], d.get("target"), d["interval_s"], d["enabled"], d["tags"], d.get("parent"))
                for d in parsed.devices] == [
            ("beacon-1", None, 20, True, ["env:prod"], None),
            ("pump-1", "http://127.0.0.1:9/health", 30, True, ["env:prod", "site/berlin"], None),
            ("pump-2", "http://127.0.0.1:9/health", 60, False, ["env:dev"], "pump-1")]


def test_csv_export_escapes_formulas_and_the_import_restores_them(tracker) -> None:
    names = ["=HYPERLINK(\"http://evil.example\")", "+1+1", "-2", "@SUM(A1)", "'=already-quoted", "plain"]
    with new_tenant(tracker) as client:
        client.post("/v1/devices", json=[http_device(n) for n in names]).raise_for_status()
        text = client.get("/v1/devices.csv").text
    cells = [r[0] for r in rows_of(text)[1:]]
    assert cells == ["'=HYPERLINK(\"http://evil.example\")", "'+1+1", "'-2", "'@SUM(A1)", "''=already-quoted", "plain"]
    assert not any(c[:1] in "=+-@" for c in cells), "no cell a spreadsheet would evaluate"
    assert [d["name"] for d in parse_devices_csv(text).devices] == names


def test_csv_export_streams_every_page_of_a_large_fleet(tracker) -> None:
    with new_tenant(tracker) as client:
        for start in (0, 1000):
            client.post("/v1/devices", json=[http_device(f"d-{i:05d}") for i in range(start, start + 1000)]
                        ).raise_for_status()
        client.post("/v1/devices", json=[http_device(f"d-{i:05d}") for i in range(2000, 2500)]).raise_for_status()
        names = [r[0] for r in rows_of(client.get("/v1/devices.csv", params={"sort": "name"}).text)[1:]]
    assert names == [f"d-{i:05d}" for i in range(2500)]  # more than two export pages, none twice


def test_csv_export_refuses_bad_filters_and_needs_the_key(tracker) -> None:
    with new_tenant(tracker) as client:
        assert_error(client.get("/v1/devices.csv", params={"state": "sideways"}), 422, "state")
        assert_error(client.get("/v1/devices.csv", params={"region_state": "down"}), 422, "region_state", "needs `region`")
        assert_error(client.get("/v1/devices.csv", params={"q": "x" * 500}), 422, "q")
    with tracker.client() as anonymous:
        assert anonymous.get("/v1/devices.csv").status_code == 401


def _fleet(client) -> dict[str, int]:
    made = client.post("/v1/devices", json={"devices": [
        http_device("pump-1", tags=["env:prod", "site/berlin"]),
        http_device("pump-2", tags=["env:prod"]),
        http_device("pump-3", tags=["env:dev"], timeout_ms=20000, interval_s=60),
        {"name": "beacon-1", "kind": "push", "tags": ["env:prod"]},
    ]}).json()["devices"]
    return {d["name"]: d["id"] for d in made}


def _devices(client, **params) -> dict[str, dict]:
    return {d["name"]: d for d in client.get("/v1/devices", params={"limit": 1000, **params}).json()["items"]}


def test_bulk_pause_resume_and_set_interval_on_a_filter(tracker) -> None:
    with new_tenant(tracker) as client, new_tenant(tracker) as other:
        _fleet(client)
        other.post("/v1/devices", json=http_device("foreign", tags=["env:prod"])).raise_for_status()
        before = devices_version(tracker)
        paused = client.post("/v1/devices/bulk", json={"action": "pause", "filter": {"tag": ["env:prod"], "kind": "http"}})
        assert paused.status_code == 200, paused.text
        assert paused.json() == {"action": "pause", "matched": 2, "changed": 2}
        assert devices_version(tracker) > before, "the worker is told its table changed"
        state = _devices(client)
        assert {n for n, d in state.items() if not d["enabled"]} == {"pump-1", "pump-2"}
        assert _devices(other)["foreign"]["enabled"], "another tenant's device is never touched"
        again = client.post("/v1/devices/bulk", json={"action": "pause", "filter": {"tag": ["env:prod"], "kind": "http"}})
        assert again.json() == {"action": "pause", "matched": 2, "changed": 0}
        resumed = client.post("/v1/devices/bulk", json={"action": "resume", "filter": {"name": "pump-"}})
        assert resumed.json() == {"action": "resume", "matched": 3, "changed": 2}
        assert all(d["enabled"] for d in _devices(client).values())

        interval = client.post("/v1/devices/bulk", json={"action": "set_interval", "interval_s": 300,
                                                          "filter": {"q": "pump"}})
        assert interval.json() == {"action": "set_interval", "matched": 3, "changed": 3}
        assert {n: d["interval_s"] for n, d in _devices(client).items()} == \
            {"pump-1": 300, "pump-2": 300, "pump-3": 300, "beacon-1": 60}
        # pump-3 times out after 20 s: a 10 s interval is refused for the whole selection, naming it
        refused = client.post("/v1/devices/bulk", json={"action": "set_interval", "interval_s": 10,
                                                         "filter": {"q": "pump"}})
        assert_error(refused, 422, "interval_s", "'pump-3': timeout_ms 20000")
        assert {d["interval_s"] for n, d in _devices(client).items() if n.startswith("pump")} == {300}


def test_bulk_tags_on_checked_ids_and_delete(tracker) -> None:
    with new_tenant(tracker) as client, new_tenant(tracker) as other:
        ids = _fleet(client)
        (foreign,) = [other.post("/v1/devices", json=http_device("foreign")).json()["id"]]
        added = client.post("/v1/devices/bulk", json={"action": "tag_add", "tags": ["Rack:7", "env:prod"],
                                                       "ids": [ids["pump-1"], ids["pump-3"], foreign]})
        assert added.json() == {"action": "tag_add", "matched": 2, "changed": 2}  # the foreign id matches nothing
        state = _devices(client)
        assert state["pump-1"]["tags"] == ["env:prod", "site/berlin", "rack:7"]
        assert state["pump-3"]["tags"] == ["env:dev", "rack:7", "env:prod"]
        assert _devices(other)["foreign"]["tags"] == []
        removed = client.post("/v1/devices/bulk", json={"action": "tag_remove", "tags": ["env:prod"],
                                                         "filter": {"tag": ["rack:7"]}})
        assert removed.json() == {"action": "tag_remove", "matched": 2, "changed": 2}
        assert [d["tags"] for d in _devices(client, tag="rack:7").values()] == [["site/berlin", "rack:7"],
                                                                               ["env:dev", "rack:7"]]
        # ids and filter together: only ids the filter matches
        deleted = client.post("/v1/devices/bulk", json={"action": "delete", "filter": {"kind": "push"},
                                                         "ids": [ids["beacon-1"], ids["pump-2"]]})
        assert deleted.json() == {"action": "delete", "matched": 1, "changed": 1}
        assert sorted(_devices(client)) == ["pump-1", "pump-2", "pump-3"]
        assert client.post("/v1/devices/bulk", json={"action": "delete", "all": True}).json()["changed"] == 3
        assert _devices(client) == {}
        assert list(_devices(other)) == ["foreign"]


def test_bulk_refuses_unclear_or_oversized_requests_and_changes_nothing(tracker) -> None:
    with new_tenant(tracker) as client:
        _fleet(client)
        for body, field, reason in [
            ({"action": "delete"}, "filter", "\"all\": true"),
            ({"action": "delete", "filter": {}}, "filter", "selects every device"),
            ({"action": "explode", "all": True}, "action", ""),
            ({"action": "tag_add", "all": True}, "tags", "needs at least one tag"),
            ({"action": "tag_add", "all": True, "tags": ["no spaces"]}, "tags[0]", ""),
            ({"action": "pause", "all": True, "tags": ["x"]}, "tags", "only tag_add and tag_remove"),
            ({"action": "set_interval", "all": True}, "interval_s", "between 5 and 86400"),
            ({"action": "set_interval", "all": True, "interval_s": 2}, "interval_s", ""),
            ({"action": "pause", "filter": {"state": "sideways"}}, "filter.state", ""),
            ({"action": "pause", "filter": {"colour": "red"}}, "filter.colour", ""),
            ({"action": "pause", "ids": [0]}, "ids[0]", ""),
            ({"action": "pause", "ids": list(range(1, 10_002))}, "ids", "10000"),
            ({"action": "pause", "filter": {"region_state": "down"}}, "region_state", "needs `region`"),
        ]:
            assert_error(client.post("/v1/devices/bulk", json=body), 422, field, reason)
        # pump-1 gets to 20 tags, the most a device may have; two more are refused for all, naming it
        twenty = [f"t{i}" for i in range(18)]
        assert client.post("/v1/devices/bulk", json={"action": "tag_add", "tags": twenty, "filter": {"name": "pump-1"}}
                           ).json()["changed"] == 1
        too_many = client.post("/v1/devices/bulk", json={"action": "tag_add", "tags": ["one-more", "and-another"],
                                                          "filter": {"q": "pump"}})
        assert_error(too_many, 422, "tags", "'pump-1' would have 22 tags")
        assert all("one-more" not in d["tags"] for d in _devices(client).values()), "all or nothing"
        assert all(d["enabled"] for d in _devices(client).values())


def test_bulk_resume_is_admitted_against_the_check_rate_quota(tracker) -> None:
    with new_tenant(tracker) as client:
        slug = client.get("/v1/tenant").json()["slug"]
        client.post("/v1/devices", json=[http_device(f"q-{i}", interval_s=10, enabled=False) for i in range(5)]
                    ).raise_for_status()
        with tracker.client(tracker.admin_token) as admin:
            admin.put(f"/v1/tenants/{slug}/quotas", json={"checks_per_second": 0.3}).raise_for_status()
        refused = client.post("/v1/devices/bulk", json={"action": "resume", "all": True})
        assert refused.status_code == 429 and "checks per second" in refused.text, refused.text
        assert not any(d["enabled"] for d in _devices(client).values())
        ok = client.post("/v1/devices/bulk", json={"action": "resume", "filter": {"name": "q-"},
                                                    "ids": [d["id"] for d in _devices(client).values()][:3]})
        assert ok.json()["changed"] == 3


def test_name_search_finds_parents_by_name_only(tracker) -> None:
    with new_tenant(tracker) as client:
        client.post("/v1/devices", json=[http_device("gateway-berlin"), http_device("sensor-1", target="http://gateway.example.com/"),
                                         http_device("Gateway_Paris")]).raise_for_status()
        by_name = client.get("/v1/devices", params={"name": "gateway", "sort": "name"}).json()["items"]
        assert sorted(d["name"] for d in by_name) == ["Gateway_Paris", "gateway-berlin"]  # not sensor-1's target
        assert client.get("/v1/devices", params={"name": "_"}).json()["total"] == 1  # `_` is no wildcard
        assert_error(client.get("/v1/devices", params={"name": "a\x00"}), 422, "name")
