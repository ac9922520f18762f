"""Check options in the dashboard (a running `iot dashboard`, real database): the add and edit forms carry
each kind's option fields and retries, checked like the API; header values are stored sealed and never
shown back; the
device page lists the options; CSV import takes `options` (JSON) and `retries` columns; push devices get
no latency chart."""

from __future__ import annotations

import html
import itertools

from dashboard.harness import csrf_of, sql
from iot.settings import SecretsKeySettings

_names = itertools.count()


def _name(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def _options(dashboard, name: str) -> tuple[dict, int | None]:
    (row,) = sql(dashboard.database_url, "SELECT options, retries FROM devices WHERE name = $1", name)
    return row["options"], row["retries"]


def _add(client, csrf: str, **fields: str):
    return client.post("/devices", data={"csrf": csrf, "options_field": "1", "enabled_field": "1", "enabled": "on",
                                         **fields})


def test_add_http_device_with_options_edit_it_and_see_them(dashboard) -> None:
    client = dashboard.signed_in(dashboard.acme)
    new_page = client.get("/devices/new").text
    assert 'name="opt_keyword"' in new_page and 'name="opt_warn_days"' in new_page and 'name="retries"' in new_page
    csrf = csrf_of(new_page)
    name = _name("api")
    added = _add(client, csrf, name=name, kind="http", target="http://127.0.0.1:9/health", retries="3",
                 opt_method="POST", opt_expected_status="200-299, 304", opt_headers="X-Api-Key: s3cret-key\nAccept: text/plain",
                 opt_body='{"ping": true}', opt_keyword="ok", opt_json_path="$.count", opt_json_equals="3",
                 # another kind's fields in the same form are ignored
                 opt_warn_days="30", opt_record_type="MX")
    assert added.status_code == 200, html.unescape(added.text)[-2000:]
    options, retries = _options(dashboard, name)
    headers = options.pop("headers")
    assert options == {"method": "POST", "expected_status": ["200-299", 304], "body": '{"ping": true}',
                       "keyword": "ok", "json_path": "$.count", "json_equals": 3}
    assert retries == 3
    box = SecretsKeySettings().secret_box()  # the processes of the tests run with the default key
    assert set(headers) == {"X-Api-Key", "Accept"} and box.open(headers["X-Api-Key"]) == "s3cret-key"

    (device_id,) = [r["id"] for r in sql(dashboard.database_url, "SELECT id FROM devices WHERE name = $1", name)]
    page = html.unescape(client.get(f"/devices/{device_id}").text)
    assert "Body must contain: <code>ok</code>" in page
    assert "Expected status codes: <code>200-299, 304</code>" in page
    # header values masked (jsonb keeps keys in its own order)
    assert "Request headers: <code>Accept: •••, X-Api-Key: •••</code>" in page and "s3cret-key" not in page  # noqa: RUF001
    assert "after 3 failed checks in a row" in page

    edit = client.get(f"/devices/{device_id}/edit").text
    assert "s3cret-key" not in edit and "values are not shown" in edit
    assert 'value="200-299, 304"' in edit and 'value="ok"' in edit
    # saving the form as shown keeps the headers; changing the keyword changes only that
    saved = client.post(f"/devices/{device_id}", data={
        "csrf": csrf, "options_field": "1", "name": name, "kind": "http", "target": "http://127.0.0.1:9/health",
        "retries": "", "opt_method": "POST", "opt_expected_status": "200-299, 304", "opt_headers": "",
        "opt_body": '{"ping": true}', "opt_keyword": "healthy", "opt_json_path": "", "opt_json_equals": ""})
    assert saved.status_code == 303, html.unescape(saved.text)[-2000:]
    options, retries = _options(dashboard, name)
    assert {k: box.open(v) for k, v in options["headers"].items()} == {"X-Api-Key": "s3cret-key", "Accept": "text/plain"}
    assert options["keyword"] == "healthy" and "json_path" not in options and retries is None
    cleared = client.post(f"/devices/{device_id}", data={
        "csrf": csrf, "options_field": "1", "name": name, "kind": "http", "target": "http://127.0.0.1:9/health",
        "opt_method": "GET", "opt_clear_headers": "on"})
    assert cleared.status_code == 303
    assert _options(dashboard, name)[0] == {}


def test_bad_options_in_the_form_name_the_field_and_keep_the_input(dashboard) -> None:
    client = dashboard.signed_in(dashboard.acme)
    csrf = csrf_of(client.get("/devices/new").text)
    cases = [
        ({"kind": "http", "target": "http://127.0.0.1:9/", "opt_expected_status": "200-199"},
         "options.expected_status: item 0: '200-199' is not a status 100-599"),
        ({"kind": "http", "target": "http://127.0.0.1:9/", "opt_headers": "no colon here"},
         "options.headers: line 1: write one header per line as Name: value"),
        ({"kind": "tls", "target": "127.0.0.1:443", "opt_warn_days": "soon"}, "options.warn_days: must be a whole number"),
        ({"kind": "dns", "target": "example.com", "opt_resolver": "10.0.1.11"}, "options.resolver:"),
        ({"kind": "tcp", "target": "127.0.0.1:9", "retries": "50"}, "retries: must be between 1 and 20"),
    ]
    for fields, message in cases:
        name = _name("bad")
        response = _add(client, csrf, name=name, **fields)
        assert response.status_code == 422 and message in html.unescape(response.text), (fields, response.text[-1500:])
        assert f'value="{name}"' in response.text
        assert not sql(dashboard.database_url, "SELECT 1 FROM devices WHERE name = $1", name)


def test_csv_import_takes_options_and_retries(dashboard) -> None:
    client = dashboard.signed_in(dashboard.acme)
    csrf = csrf_of(client.get("/devices/new").text)
    a, b = _name("csv"), _name("csv")
    text = ("name,kind,target,retries,options\n"
            f'{a},http,http://127.0.0.1:9/,4,"{{""expected_status"": [""200-299""], ""keyword"": ""ok""}}"\n'
            f'{b},tls,127.0.0.1:443,,"{{""warn_days"": 30}}"\n')
    imported = client.post("/devices/import", data={"csrf": csrf, "csv_text": text})
    assert imported.status_code == 200, html.unescape(imported.text)[-1500:]
    assert _options(dashboard, a) == ({"expected_status": ["200-299"], "keyword": "ok"}, 4)
    assert _options(dashboard, b) == ({"warn_days": 30}, None)

    c = _name("csv")
    bad_json = client.post("/devices/import", data={"csrf": csrf, "csv_text": f"name,kind,target,options\n{c},http,http://127.0.0.1:9/,{{nope}}\n"})
    assert bad_json.status_code == 422 and "line 2: options: must be a JSON object" in html.unescape(bad_json.text)
    bad_option = client.post("/devices/import", data={"csrf": csrf, "csv_text": (
        "name,kind,target,options\n"
        f'{c},http,http://127.0.0.1:9/,"{{""keyword"": ""ok""}}"\n'
        f'{_name("csv")},dns,example.com,"{{""record_type"": ""SRV""}}"\n')})
    assert bad_option.status_code == 422
    assert "line 3: options.record_type:" in html.unescape(bad_option.text)
    assert not sql(dashboard.database_url, "SELECT 1 FROM devices WHERE name = $1", c)  # all or nothing


def test_push_devices_show_no_latency_chart(dashboard) -> None:
    client = dashboard.signed_in(dashboard.acme)
    csrf = csrf_of(client.get("/devices/new").text)
    name = _name("push")
    assert _add(client, csrf, name=name, kind="push", target="").status_code == 200
    (device_id,) = [r["id"] for r in sql(dashboard.database_url, "SELECT id FROM devices WHERE name = $1", name)]
    page = client.get(f"/devices/{device_id}").text
    assert "Response time per region" not in page and "no region checks it" in page
    assert "failed checks in a row" not in page
