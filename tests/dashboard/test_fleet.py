"""Organising a fleet in the dashboard (issue 15): the CSV download of the filtered list imports again,
the CSV import reports every bad line (number, field, reason) and adds nothing while one is bad, bulk
actions on the checked or all matching devices, the parent picked by name."""

from __future__ import annotations

import csv
import html
import io

from dashboard.harness import create_devices, csrf_of, new_tenant, sql
from iot.repo.devices import DeviceSpec


def text(response) -> str:
    return html.unescape(response.text)


def test_csv_import_reports_every_bad_line_and_adds_nothing(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "csv-every")
    create_devices(dashboard.database_url, tenant, [DeviceSpec("taken-1", "icmp", "127.3.0.1")])
    client = dashboard.signed_in(tenant)
    csrf = csrf_of(client.get("/devices/new").text)
    fleet = ("name,kind,target,interval_s,tags\n"
             "good-1,http,http://127.3.0.2/,30,\n"            # 2: fine
             "bad-kind,smtp,127.3.0.3,30,\n"                  # 3: kind
             "bad-int,icmp,127.3.0.4,often,\n"                # 4: interval_s not a number
             "good-2,tcp,127.3.0.5:22,60,env:prod\n"          # 5: fine
             "bad-target,tcp,127.3.0.6,60,\n"                 # 6: no port
             "taken-1,icmp,127.3.0.7,60,\n"                   # 7: name exists
             "good-1,icmp,127.3.0.8,60,\n"                    # 8: name twice in the file
             "bad-tag,icmp,127.3.0.9,60,ok;no spaces\n"       # 9: tags[1]
             "short,icmp\n"                                   # 10: row length
             "too-fast,icmp,127.3.0.10,1,\n")                 # 11: interval range
    response = client.post("/devices/import", data={"csrf": csrf, "csv_text": fleet})
    assert response.status_code == 422
    page = text(response)
    problems = [p.split("</li>")[0] for p in page.split("<li>")[1:]]
    assert [p.split(":", 1)[0] for p in problems] == [f"line {n}" for n in (3, 4, 6, 7, 8, 9, 10, 11)]
    for expected in ("line 3: kind: 'smtp' is not one of http, tcp, icmp, push",
                     "line 4: interval_s: must be a whole number, got 'often'",
                     "line 6: target: '127.3.0.6' is not host:port",
                     "line 7: name: a device named 'taken-1' already exists",
                     "line 8: name: 'good-1' is also the name of an earlier line",
                     "line 9: tags[1]: must be 1-50 characters",
                     "line 10: has 2 values but the header has 5 columns",
                     "line 11: interval_s: must be between 5 and 86400 seconds"):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    assert "Fix 8 problems" in page
    assert [r["name"] for r in sql(dashboard.database_url, "SELECT name FROM devices WHERE tenant_id = $1",
                                   tenant.id)] == ["taken-1"], "nothing imported while a line is bad"


def test_the_csv_download_of_a_filtered_list_imports_into_another_tenant(dashboard) -> None:
    source = new_tenant(dashboard.database_url, "csv-source")
    target = new_tenant(dashboard.database_url, "csv-target")
    create_devices(dashboard.database_url, source, [
        DeviceSpec("=cmd|' /C calc'!A0", "http", "http://127.3.1.1/health", interval_s=30, tags=["env:prod"]),
        DeviceSpec("gw-1", "tcp", "127.3.1.2:502", timeout_ms=2000, tags=["env:prod", "site/berlin"]),
        DeviceSpec("beacon", "push", interval_s=20, grace_s=300, enabled=False, tags=["env:prod"]),
        DeviceSpec("lab-1", "icmp", "127.3.1.3", tags=["env:dev"]),
    ])
    client = dashboard.signed_in(source)
    listing = client.get("/devices?tag=env%3Aprod&sort=name")
    assert 'href="/devices.csv?tag=env%3Aprod&amp;sort=name&amp;dir=asc"' in listing.text
    download = client.get("/devices.csv?tag=env%3Aprod&sort=name&dir=asc")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.text)))
    assert [r[0] for r in rows[1:]] == ["'=cmd|' /C calc'!A0", "beacon", "gw-1"]  # lab-1 is filtered out

    importer = dashboard.signed_in(target)
    csrf = csrf_of(importer.get("/devices/new").text)
    imported = importer.post("/devices/import", data={"csrf": csrf, "csv_text": ""},
                             files={"csv_file": ("fleet.csv", download.content, "text/csv")})
    assert imported.status_code == 200, text(imported)[:2000]
    columns = "name, kind, target, interval_s, timeout_ms, grace_s, enabled, tags"
    query = f"SELECT {columns} FROM devices WHERE tenant_id = $1 AND 'env:prod' = ANY(tags) ORDER BY name"
    assert [tuple(r) for r in sql(dashboard.database_url, query, target.id)] == \
        [tuple(r) for r in sql(dashboard.database_url, query, source.id)]
    again = importer.get("/devices.csv?sort=name").text
    assert again == download.text  # byte for byte: nothing lost or changed on the way
