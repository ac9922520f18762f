"""Device tags in the dashboard: shown on the list and device page, a link per tag filters the list, the
device form edits them, CSV import carries a `tags` column (`;`-separated) and reports bad tags by line."""

from __future__ import annotations

import html

from dashboard.harness import create_devices, csrf_of, new_tenant, sql
from iot.repo.devices import DeviceSpec


def names_listed(page: str) -> list[str]:
    return sorted(part.split('"', 1)[0] for part in page.split('data-device="')[1:])


def test_list_shows_tags_and_a_link_per_tag_filters_it(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "tagged")
    other = new_tenant(dashboard.database_url, "tagged-other")
    create_devices(dashboard.database_url, tenant, [
        DeviceSpec("tg-a", "http", "http://127.2.0.1/", tags=["env:prod", "site/berlin"]),
        DeviceSpec("tg-b", "http", "http://127.2.0.2/", tags=["env:prod"]),
        DeviceSpec("tg-c", "http", "http://127.2.0.3/"),
    ])
    create_devices(dashboard.database_url, other, [
        DeviceSpec("foreign", "http", "http://127.2.0.4/", tags=["customer:megacorp"])])
    client = dashboard.signed_in(tenant)
    page = html.unescape(client.get("/devices").text)
    assert names_listed(page) == ["tg-a", "tg-b", "tg-c"]
    assert 'href="/devices?tag=env%3Aprod"' in page and 'href="/devices?tag=site%2Fberlin"' in page
    assert "env:prod (2)" in page and "site/berlin (1)" in page  # the tenant's tags with counts
    assert "customer:megacorp" not in page  # never another tenant's tags
    assert names_listed(client.get("/devices?tag=env%3Aprod").text) == ["tg-a", "tg-b"]
    both = client.get("/devices?tag=env%3Aprod&tag=site%2Fberlin")
    assert names_listed(both.text) == ["tg-a"]
    assert names_listed(client.get("/devices?tag=customer%3Amegacorp").text) == []
    # a bad tag in the URL is dropped, like other unknown filter values, not a 500
    assert client.get("/devices?tag=%00bad").status_code == 200


def test_device_page_shows_tags_and_the_form_edits_them(dashboard) -> None:
    (device_id,) = create_devices(dashboard.database_url, dashboard.acme,
                                  [DeviceSpec("tag-edit", "http", "http://127.2.1.1/", tags=["env:dev"])])
    client = dashboard.signed_in(dashboard.acme)
    assert 'href="/devices?tag=env%3Adev"' in client.get(f"/devices/{device_id}").text
    form = client.get(f"/devices/{device_id}/edit")
    assert 'name="tags" value="env:dev"' in form.text
    csrf = csrf_of(form.text)
    fields = {"csrf": csrf, "name": "tag-edit", "kind": "http", "target": "http://127.2.1.1/", "enabled_field": "1",
              "enabled": "on"}
    bad = client.post(f"/devices/{device_id}", data={**fields, "tags": "ok, bad!tag"})
    assert bad.status_code == 422 and "tags[1]: must be 1-50 characters" in html.unescape(bad.text)
    saved = client.post(f"/devices/{device_id}", data={**fields, "tags": "Env:Prod, site/berlin  rack-3"})
    assert saved.status_code == 303
    tags = sql(dashboard.database_url, "SELECT tags FROM devices WHERE id = $1", device_id)[0]["tags"]
    assert tags == ["env:prod", "site/berlin", "rack-3"]
    cleared = client.post(f"/devices/{device_id}", data={**fields, "tags": ""})
    assert cleared.status_code == 303
    assert sql(dashboard.database_url, "SELECT tags FROM devices WHERE id = $1", device_id)[0]["tags"] == []


def test_csv_import_carries_tags_and_reports_bad_ones_by_line(dashboard) -> None:
    client = dashboard.signed_in(dashboard.acme)
    csrf = csrf_of(client.get("/devices/new").text)
    bad = ("name,kind,target,tags\ncsvt-a,http,http://127.2.2.1/,env:prod;site/berlin\n"
           "csvt-b,http,http://127.2.2.2/,ok;no spaces\n")
    response = client.post("/devices/import", data={"csrf": csrf, "csv_text": bad})
    assert response.status_code == 422
    assert "line 3: tags[1]: must be 1-50 characters" in html.unescape(response.text)
    assert not sql(dashboard.database_url, "SELECT 1 FROM devices WHERE name LIKE 'csvt-%'")
    good = bad.replace("ok;no spaces", "")
    assert client.post("/devices/import", data={"csrf": csrf, "csv_text": good}).status_code == 200
    rows = sql(dashboard.database_url, "SELECT name, tags FROM devices WHERE name LIKE 'csvt-%' ORDER BY name")
    assert [tuple(r) for r in rows] == [("csvt-a", ["env:prod", "site/berlin"]), ("csvt-b", [])]
