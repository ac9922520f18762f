"""Organising a fleet through the tenant API (issue 15): the filtered list as CSV (streamed, formula-safe,
round-tripping through the CSV import), bulk actions on a filtered selection, the name search that picks
a parent. A real tracker process on a real Postgres."""

from __future__ import annotations

import csv
import io

from test_tracker_api import assert_error, http_device, new_tenant

from iot.dashboard.csv_import import parse_devices_csv


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_export_has_the_import_columns_and_follows_the_filters(tracker) -> None:
    with new_tenant(tracker) as client, new_tenant(tracker) as other:
        client.post("/v1/devices", json={"devices": [
            http_device("pump-1", tags=["env:prod", "site/berlin"], interval_s=30),
            http_device("pump-2", tags=["env:dev"], enabled=False),
            {"name": "beacon-1", "kind": "push", "interval_s": 20, "tags": ["env:prod"]},
        ]}).raise_for_status()
        other.post("/v1/devices", json=http_device("foreign-1", tags=["env:prod"])).raise_for_status()
        response = client.get("/v1/devices.csv", params={"sort": "name"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"].startswith("attachment; filename=")
        rows = rows_of(response.text)
        assert rows == [
            ["name", "kind", "target", "interval_s", "timeout_ms", "grace_s", "enabled", "tags"],
            ["beacon-1", "push", "", "20", "5000", "60", "true", "env:prod"],
            ["pump-1", "http", "http://127.0.0.1:9/health", "30", "5000", "", "true", "env:prod;site/berlin"],
            ["pump-2", "http", "http://127.0.0.1:9/health", "60", "5000", "", "false", "env:dev"],
        ]
        prod = rows_of(client.get("/v1/devices.csv", params={"tag": "env:prod", "kind": "http"}).text)
        assert [r[0] for r in prod[1:]] == ["pump-1"]  # never another tenant's foreign-1
        assert [r[0] for r in rows_of(client.get("/v1/devices.csv", params={"q": "pump", "order": "desc",
                                                                             "sort": "name"}).text)[1:]] == ["pump-2", "pump-1"]
        # The export is what the import reads: same devices back, field by field.
        parsed = parse_devices_csv(response.text)
        assert parsed.problems == []
        assert [(d["name"], d.get("target"), d["interval_s"], d["enabled"], d["tags"]) for d in parsed.devices] == [
            ("beacon-1", None, 20, True, ["env:prod"]),
            ("pump-1", "http://127.0.0.1:9/health", 30, True, ["env:prod", "site/berlin"]),
            ("pump-2", "http://127.0.0.1:9/health", 60, False, ["env:dev"])]


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
