"""Organising a fleet in the dashboard (issue 15): the CSV download of the filtered list imports again,
the CSV import reports every bad line (number, field, reason) and adds nothing while one is bad, bulk
actions on the checked or all matching devices, the parent picked by name."""

from __future__ import annotations

import csv
import html
import io
import re

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
    alert = page.split('class="error" role="alert"', 1)[1].split("</div>", 1)[0]
    problems = [p.split("</li>")[0] for p in alert.split("<li>")[1:]]
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


def test_csv_parents_by_name_are_checked_on_every_line_and_linked_in_the_same_import(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "csv-parents")
    (existing,) = create_devices(dashboard.database_url, tenant, [DeviceSpec("gw-old", "icmp", "127.3.4.1")])
    create_devices(dashboard.database_url, new_tenant(dashboard.database_url, "csv-parents-other"),
                   [DeviceSpec("gw-foreign", "icmp", "127.3.4.2")])
    client = dashboard.signed_in(tenant)
    csrf = csrf_of(client.get("/devices/new").text)
    bad = ("name,kind,target,parent\n"
           "s-1,icmp,127.3.4.3,gw-new\n"       # 2: a later line: fine
           "gw-new,icmp,127.3.4.4,\n"          # 3
           "s-2,icmp,127.3.4.5,gw-foreign\n"   # 4: another tenant's device is no parent
           "s-3,icmp,127.3.4.6,s-3\n"          # 5: itself
           "c-1,icmp,127.3.4.7,c-2\n"          # 6: c-1 -> c-2 -> c-1
           "c-2,icmp,127.3.4.8,c-1\n"          # 7
           "s-4,icmp,127.3.4.9,gw-old\n")      # 8: an existing device: fine
    response = client.post("/devices/import", data={"csrf": csrf, "csv_text": bad})
    assert response.status_code == 422
    page = text(response)
    for expected in ("line 4: parent: no device named 'gw-foreign' in this tenant or this file",
                     "line 5: parent: a device cannot be its own parent",
                     "line 6: parent: c-1 -> c-2 -> c-1 is a cycle",
                     "line 7: parent: c-2 -> c-1 -> c-2 is a cycle"):
        assert expected in page, (expected, page[page.find("Nothing was added"):][:1500])
    assert "line 2:" not in page and "line 8:" not in page
    assert len(sql(dashboard.database_url, "SELECT 1 FROM devices WHERE tenant_id = $1", tenant.id)) == 1
    good = "\n".join(line for line in bad.splitlines() if not line.startswith(("s-2", "s-3", "c-"))) + "\n"
    assert client.post("/devices/import", data={"csrf": csrf, "csv_text": good}).status_code == 200
    rows = sql(dashboard.database_url, "SELECT d.name, p.id AS parent_id, p.name AS parent FROM devices d "
               "LEFT JOIN devices p ON p.id = d.parent_id WHERE d.tenant_id = $1 ORDER BY d.name", tenant.id)
    assert [(r["name"], r["parent"]) for r in rows] == [("gw-new", None), ("gw-old", None), ("s-1", "gw-new"),
                                                        ("s-4", "gw-old")]
    assert rows[3]["parent_id"] == existing


def test_the_csv_download_of_a_filtered_list_imports_into_another_tenant(dashboard) -> None:
    source = new_tenant(dashboard.database_url, "csv-source")
    target = new_tenant(dashboard.database_url, "csv-target")
    formula, gateway, beacon, _lab = create_devices(dashboard.database_url, source, [
        DeviceSpec("=cmd|' /C calc'!A0", "http", "http://127.3.1.1/health", interval_s=30, tags=["env:prod"]),
        DeviceSpec("gw-1", "tcp", "127.3.1.2:502", timeout_ms=2000, tags=["env:prod", "site/berlin"]),
        DeviceSpec("beacon", "push", interval_s=20, grace_s=300, enabled=False, tags=["env:prod"]),
        DeviceSpec("lab-1", "icmp", "127.3.1.3", tags=["env:dev"]),
    ])
    # behind the gateway, both on lines before the gateway's own: the import links them once all exist
    sql(dashboard.database_url, "UPDATE devices SET parent_id = $1 WHERE id = ANY($2)", gateway, [formula, beacon])
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
    columns = ("d.name, d.kind, d.target, d.interval_s, d.timeout_ms, d.grace_s, d.enabled, d.tags, p.name AS parent")
    query = (f"SELECT {columns} FROM devices d LEFT JOIN devices p ON p.id = d.parent_id "
             "WHERE d.tenant_id = $1 AND 'env:prod' = ANY(d.tags) ORDER BY d.name")
    assert [r["parent"] for r in sql(dashboard.database_url, query, source.id)] == ["gw-1", "gw-1", None]
    assert [tuple(r) for r in sql(dashboard.database_url, query, target.id)] == \
        [tuple(r) for r in sql(dashboard.database_url, query, source.id)]
    again = importer.get("/devices.csv?sort=name").text
    assert again == download.text  # byte for byte: nothing lost or changed on the way


def _state(database_url: str, tenant) -> dict[str, tuple]:
    rows = sql(database_url, "SELECT name, enabled, interval_s, tags FROM devices WHERE tenant_id = $1", tenant.id)
    return {r["name"]: (r["enabled"], r["interval_s"], list(r["tags"])) for r in rows}


def test_bulk_actions_on_checked_devices_and_on_all_matching(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "bulk-ui")
    other = new_tenant(dashboard.database_url, "bulk-ui-other")
    ids = dict(zip(("a", "b", "c", "d"), create_devices(dashboard.database_url, tenant, [
        DeviceSpec("a", "icmp", "127.3.2.1", tags=["env:prod"]), DeviceSpec("b", "icmp", "127.3.2.2", tags=["env:prod"]),
        DeviceSpec("c", "icmp", "127.3.2.3", tags=["env:dev"]), DeviceSpec("d", "icmp", "127.3.2.4")]), strict=True))
    (foreign,) = create_devices(dashboard.database_url, other, [DeviceSpec("f", "icmp", "127.3.2.5")])
    client = dashboard.signed_in(tenant)
    listing = client.get("/devices")
    csrf = csrf_of(listing.text)
    assert f'name="id" value="{ids["a"]}" form="bulk"' in listing.text and 'action="/devices/bulk"' in listing.text

    # checked devices (a foreign id among them changes nothing of the other tenant's)
    paused = client.post("/devices/bulk", data={"csrf": csrf, "scope": "checked", "action": "pause",
                                                "id": [str(ids["a"]), str(ids["c"]), str(foreign)]})
    assert paused.status_code == 303
    assert paused.headers["location"] == "/devices?sort=name&dir=asc&bulk=pause&matched=2&changed=2"
    assert "Pause checks: 2 of 2 selected devices changed." in text(client.get(paused.headers["location"]))
    assert {n for n, s in _state(dashboard.database_url, tenant).items() if not s[0]} == {"a", "c"}
    assert _state(dashboard.database_url, other)["f"][0] is True

    # all matching the list's filters (the form repeats them)
    tagged = client.post("/devices/bulk", data={"csrf": csrf, "scope": "matching", "tag": "env:prod",
                                                "action": "tag_add", "tags": "site/berlin, rack-1"})
    assert tagged.status_code == 303 and "matched=2&changed=2" in tagged.headers["location"]
    interval = client.post("/devices/bulk", data={"csrf": csrf, "scope": "matching", "q": "c", "action": "set_interval",
                                                  "interval_s": "600"})
    assert interval.status_code == 303
    state = _state(dashboard.database_url, tenant)
    assert state["a"] == (False, 60, ["env:prod", "site/berlin", "rack-1"]) and state["b"][2] == ["env:prod", "site/berlin", "rack-1"]
    assert state["c"] == (False, 600, ["env:dev"]) and state["d"] == (True, 60, [])

    # refused: nothing checked, a bad interval; the list shows why and nothing changed
    nothing = client.post("/devices/bulk", data={"csrf": csrf, "scope": "checked", "action": "resume"})
    assert nothing.status_code == 422 and "no device is checked" in text(nothing)
    bad = client.post("/devices/bulk", data={"csrf": csrf, "scope": "matching", "action": "set_interval", "interval_s": "2"})
    assert bad.status_code == 422 and "interval_s: set_interval needs interval_s between 5 and 86400" in text(bad)
    hostile = [({"scope": "checked", "action": "pause", "id": "12abc"}, "id: '12abc' is not a device id"),
               ({"scope": "checked", "action": "pause", "id": "99999999999999999999"}, "is not a device id"),
               ({"scope": "matching", "action": "tag_add", "tags": "ok, bad\x00tag"}, "tags[1]: "),
               ({"scope": "matching", "action": "tag_add", "tags": ""}, "tag_add needs at least one tag"),
               ({"scope": "matching", "action": "set_interval", "interval_s": "9" * 40}, "interval_s: "),
               ({"scope": "matching", "action": "reboot"}, "action: choose what to do")]
    for fields, message in hostile:
        response = client.post("/devices/bulk", data={"csrf": csrf, **fields})
        assert response.status_code == 422 and message in text(response), (fields, text(response)[:300])
    assert _state(dashboard.database_url, tenant) == state

    # delete asks first, naming how many it would delete (never counting another tenant's device)
    one = client.post("/devices/bulk", data={"csrf": csrf, "scope": "checked", "action": "delete",
                                             "id": [str(ids["c"]), str(foreign)]})
    assert one.status_code == 200 and "Delete 1 device?" in text(one)
    none = client.post("/devices/bulk", data={"csrf": csrf, "scope": "checked", "action": "delete", "id": str(foreign)})
    assert none.status_code == 422 and "no device matches any more" in text(none)
    # the confirmation deletes exactly those
    ask = client.post("/devices/bulk", data={"csrf": csrf, "scope": "matching", "tag": "env:prod", "action": "delete"})
    assert ask.status_code == 200 and "Delete 2 devices?" in text(ask)
    assert len(_state(dashboard.database_url, tenant)) == 4
    confirm_fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', ask.text))
    assert confirm_fields["confirm"] == "yes" and confirm_fields["tag"] == "env:prod"
    done = client.post("/devices/bulk", data=confirm_fields)
    assert done.status_code == 303 and "bulk=delete&matched=2&changed=2" in done.headers["location"]
    assert sorted(_state(dashboard.database_url, tenant)) == ["c", "d"]
    # CSRF like every other form
    assert client.post("/devices/bulk", data={"scope": "matching", "action": "delete", "confirm": "yes"}).status_code == 403
    assert sorted(_state(dashboard.database_url, tenant)) == ["c", "d"]


def test_parent_is_picked_by_name_from_a_search(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "parents")
    other = new_tenant(dashboard.database_url, "parents-other")
    gw_berlin, gw_paris, _sensor = create_devices(dashboard.database_url, tenant, [
        DeviceSpec("gateway-berlin", "icmp", "127.3.3.1"), DeviceSpec("gateway-paris", "icmp", "127.3.3.2"),
        DeviceSpec("sensor-1", "http", "http://gateway.example.com/")])
    create_devices(dashboard.database_url, other, [DeviceSpec("gateway-foreign", "icmp", "127.3.3.3")])
    client = dashboard.signed_in(tenant)
    form = client.get("/devices/new").text
    assert 'hx-get="/fragments/parents"' in form and 'name="parent_q"' in form
    found = text(client.get("/fragments/parents", params={"parent_q": "GATEWAY"}))
    assert re.findall(r'name="parent_id" value="(\d*)"', found) == ["", str(gw_berlin), str(gw_paris)]
    assert "gateway-foreign" not in found and "sensor-1" not in found  # name only, this tenant only
    assert "No device named like “nothing”" in text(client.get("/fragments/parents", params={"parent_q": "nothing"}))
    csrf = csrf_of(form)
    created = client.post("/devices", data={"csrf": csrf, "name": "pump-7", "kind": "icmp", "target": "127.3.3.7",
                                            "parent_q": "berlin", "parent_id": str(gw_berlin)})
    assert created.status_code == 200
    (pump,) = [r["id"] for r in sql(dashboard.database_url, "SELECT id FROM devices WHERE name = 'pump-7'")]
    edit = text(client.get(f"/devices/{pump}/edit"))
    assert f'value="{gw_berlin}" checked> gateway-berlin' in edit  # the current parent, by name
    assert f'<a href="/devices/{gw_berlin}">gateway-berlin</a>' in client.get(f"/devices/{pump}").text
    # searching again keeps the chosen parent first; the device itself is never offered
    again = text(client.get("/fragments/parents", params={"parent_q": "p", "parent_id": gw_berlin, "exclude": pump}))
    assert re.findall(r'name="parent_id" value="(\d*)"', again)[:2] == ["", str(gw_berlin)]
    assert f'value="{pump}"' not in again
    moved = client.post(f"/devices/{pump}", data={"csrf": csrf, "name": "pump-7", "kind": "icmp", "target": "127.3.3.7",
                                                  "parent_id": str(gw_paris), "enabled_field": "1", "enabled": "on"})
    assert moved.status_code == 303
    assert sql(dashboard.database_url, "SELECT parent_id FROM devices WHERE id = $1", pump)[0]["parent_id"] == gw_paris
    cleared = client.post(f"/devices/{pump}", data={"csrf": csrf, "name": "pump-7", "kind": "icmp",
                                                    "target": "127.3.3.7", "parent_id": "", "enabled_field": "1"})
    assert cleared.status_code == 303
    assert sql(dashboard.database_url, "SELECT parent_id FROM devices WHERE id = $1", pump)[0]["parent_id"] is None
