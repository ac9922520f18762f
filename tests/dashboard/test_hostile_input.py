"""The dashboard against hostile input (real `iot dashboard`, real Postgres): NUL and control characters,
over-long strings and integers past bigint in forms, filters and paths get a page that names the field,
never a 500; request bodies are capped before they are parsed; sign-out ends the session on the server;
pages with secrets are never cached."""

from __future__ import annotations

import html

import httpx
import pytest
from servers import RedisServer

from dashboard.harness import create_devices, csrf_of, new_tenant, sql, start_dashboard
from iot.dashboard.session import COOKIE_NAME
from iot.repo.devices import DeviceSpec

BIG = str(2**63)
HUGE = str(2**64 + 1)


def text(response: httpx.Response) -> str:
    return html.unescape(response.text)


@pytest.fixture(scope="module")
def tenant(dashboard):
    return new_tenant(dashboard.database_url, "hostile")


@pytest.fixture
def client(dashboard, tenant):
    signed_in = dashboard.signed_in(tenant)
    yield signed_in
    signed_in.close()


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "nul\x00name", "kind": "icmp", "target": "10.0.0.5"}, "name: "),
        ({"name": "bell\x07", "kind": "icmp", "target": "10.0.0.5"}, "name: "),
        ({"name": "n" * 201, "kind": "icmp", "target": "10.0.0.5"}, "name: "),
        ({"name": "nul-target", "kind": "http", "target": "http://10.0.0.5/\x00"}, "target: "),
        ({"name": "long-target", "kind": "http", "target": "http://10.0.0.5/" + "a" * 3000}, "target: "),
        ({"name": "big-parent", "kind": "icmp", "target": "10.0.0.5", "parent_id": BIG}, "parent_id: "),
        ({"name": "huge-interval", "kind": "icmp", "target": "10.0.0.5", "interval_s": HUGE}, "interval_s: "),
        ({"name": "huge-checks", "kind": "icmp", "target": "10.0.0.5", "anomaly_checks": HUGE}, "anomaly_checks: "),
    ],
)
def test_add_device_form_with_hostile_values_names_the_field(client, tenant, dashboard, form, message) -> None:
    csrf = csrf_of(client.get("/devices/new").text)
    response = client.post("/devices", data={"csrf": csrf, **form})
    assert response.status_code == 422, response.text[:500]
    assert message in text(response)
    assert not sql(dashboard.database_url, "SELECT 1 FROM devices WHERE tenant_id = $1 AND name = $2",
                   tenant.id, form["name"].replace("\x00", ""))


def test_edit_form_with_hostile_values_names_the_field(client, tenant, dashboard) -> None:
    (device_id,) = create_devices(dashboard.database_url, tenant, [DeviceSpec("edit-hostile", "icmp", "127.0.0.9")])
    csrf = csrf_of(client.get(f"/devices/{device_id}/edit").text)
    for field, value in (("name", "x\x00"), ("target", "127.0.0.9\nHost: evil"), ("parent_id", HUGE), ("grace_s", BIG)):
        form = {"csrf": csrf, "name": "edit-hostile", "kind": "icmp", "target": "127.0.0.9", field: value}
        response = client.post(f"/devices/{device_id}", data=form)
        assert response.status_code == 422, (field, response.text[:300])
        assert f"{field}: " in text(response)
    row = sql(dashboard.database_url, "SELECT name, target FROM devices WHERE id = $1", device_id)[0]
    assert tuple(row) == ("edit-hostile", "127.0.0.9")


def test_csv_import_with_nul_reports_the_line(client, tenant, dashboard) -> None:
    csrf = csrf_of(client.get("/devices/new").text)
    csv_text = "name,kind,target\nok-1,icmp,10.0.0.1\nbad\x00,icmp,10.0.0.2\n"
    response = client.post("/devices/import", data={"csrf": csrf, "csv_text": csv_text})
    assert response.status_code == 422 and "line 3: name: " in text(response), response.text[:500]
    assert not sql(dashboard.database_url, "SELECT 1 FROM devices WHERE tenant_id = $1 AND name = 'ok-1'", tenant.id)


@pytest.mark.parametrize(
    "query",
    [{"q": "a\x00b"}, {"region": "frank\x00furt"}, {"q": "x" * 5000}, {"page": HUGE}, {"page": "-3"},
     {"state": "down\x00"}, {"sort": "name\x00"}],
)
def test_device_list_filters_with_hostile_values_still_render(client, query) -> None:
    for path in ("/devices", "/fragments/devices"):
        response = client.get(path, params=query)
        assert response.status_code == 200, (path, response.text[:300])


@pytest.mark.parametrize("device_id", [BIG, HUGE, "0", "-1"])
def test_device_pages_with_ids_past_bigint_are_not_found(client, device_id) -> None:
    for path in (f"/devices/{device_id}", f"/devices/{device_id}/edit", f"/devices/{device_id}/delete",
                 f"/fragments/devices/{device_id}", f"/fragments/devices/{device_id}/chart"):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
    csrf = csrf_of(client.get("/devices/new").text)
    for path in (f"/devices/{device_id}", f"/devices/{device_id}/delete"):
        assert client.post(path, data={"csrf": csrf, "name": "x"}).status_code == 404, path


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"webhook_url": "https://hooks.example/\x00", "webhook_secret": ""}, "webhook url: "),
        ({"webhook_url": "https://hooks.example/" + "h" * 3000, "webhook_secret": ""}, "webhook url: "),
        ({"webhook_url": "https://hooks.example/h", "webhook_secret": "0123456789abcdef\x00"}, "webhook secret: "),
        ({"webhook_url": "https://hooks.example/h", "webhook_secret": "s" * 5000}, "webhook secret: "),
    ],
)
def test_webhook_settings_with_hostile_values_name_the_field(client, tenant, dashboard, form, message) -> None:
    csrf = csrf_of(client.get("/settings").text)
    response = client.post("/settings/webhook", data={"csrf": csrf, **form})
    assert response.status_code == 422 and message in text(response), response.text[:300]
    assert sql(dashboard.database_url, "SELECT webhook_url FROM tenants WHERE id = $1", tenant.id)[0][0] is None


def test_a_64_mib_form_is_refused_before_it_is_parsed(dashboard, tenant) -> None:
    with dashboard.client(tenant) as anonymous:
        response = anonymous.post("/signin", content=b"api_key=" + b"k" * (64 << 20),
                                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413, response.status_code


def test_sign_out_ends_the_session_on_the_server(dashboard, tenant) -> None:
    browser = dashboard.signed_in(tenant)
    stolen = browser.cookies[COOKIE_NAME]
    csrf = csrf_of(browser.get("/settings").text)
    assert browser.post("/signout", data={"csrf": csrf}).status_code == 303
    with dashboard.client(tenant) as replay:
        replay.cookies.set(COOKIE_NAME, stolen)
        response = replay.get("/settings")
        assert response.status_code == 303 and response.headers["location"].startswith("/signin"), response.text[:200]
    # Other sessions of the same tenant are not affected.
    other = dashboard.signed_in(tenant)
    assert other.get("/settings").status_code == 200
    other.close()


def test_pages_with_secrets_are_not_cached_and_hsts_is_sent(client) -> None:
    settings = client.get("/settings")
    assert settings.status_code == 200
    csrf = csrf_of(settings.text)
    created = client.post("/devices", data={"csrf": csrf, "name": "cache-probe", "kind": "push"})
    assert created.status_code == 200 and "iotd_" in created.text
    for response in (settings, created, client.get("/devices")):
        assert "no-store" in response.headers.get("cache-control", ""), response.request.url
        assert response.headers.get("strict-transport-security", "").startswith("max-age="), response.request.url


def test_device_quota_is_enforced_in_the_dashboard_too(dashboard) -> None:
    tenant = new_tenant(dashboard.database_url, "quota-dash")
    sql(dashboard.database_url, "INSERT INTO tenant_quotas (tenant_id, max_devices) VALUES ($1, 1)", tenant.id)
    client = dashboard.signed_in(tenant)
    csrf = csrf_of(client.get("/devices/new").text)
    assert client.post("/devices", data={"csrf": csrf, "name": "first", "kind": "push"}).status_code == 200
    second = client.post("/devices", data={"csrf": csrf, "name": "second", "kind": "push"})
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert "at most 1 devices" in text(second) and 'value="second"' in second.text
    csv_text = "name,kind\nthird,push\nfourth,push\n"
    imported = client.post("/devices/import", data={"csrf": csrf, "csv_text": csv_text})
    assert imported.status_code == 429 and "at most 1 devices" in text(imported)
    assert [r[0] for r in sql(dashboard.database_url, "SELECT name FROM devices WHERE tenant_id = $1", tenant.id)] \
        == ["first"]
    client.close()


def test_without_redis_signing_in_is_a_clear_503_not_a_500(dashboard, tmp_path) -> None:
    """Redis (the session store) goes away under a running dashboard: a 503 that says to retry, not a 500.
    (At start-up the dashboard waits for Redis instead: it cannot serve a session without it.)"""
    redis = RedisServer(parent=tmp_path).start()
    proc, port = start_dashboard(dashboard.database_url, redis.url, tmp_path / "d.log")
    try:
        redis.stop()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": dashboard.acme.host}) as client:
            response = client.post("/signin", data={"api_key": dashboard.acme.api_key})
        assert response.status_code == 503 and "Try again" in text(response), response.text[:300]
        assert response.headers["retry-after"] == "30"
    finally:
        proc.stop()
        redis.cleanup()


# str.isdigit() passes these, but int() raises on a superscript and on thousands of digits, and reads
# Arabic-Indic digits as a number: none of them may be a 500, and none is taken as a number.
NOT_ASCII_NUMBERS = ["\u00b2", "\u0663", "9" * 5000]


@pytest.mark.parametrize("bad", NOT_ASCII_NUMBERS, ids=["superscript", "arabic-indic", "5000-digits"])
def test_numbers_that_are_not_plain_digits_are_refused_naming_the_field(client, bad) -> None:
    for path, params in (("/incidents", {"device_id": bad}), ("/incidents", {"before": bad}),
                         ("/devices", {"bulk": "delete", "changed": bad, "matched": "1"})):
        response = client.get(path, params=params)
        assert response.status_code == 200, (path, params.keys(), response.status_code)
    csrf = csrf_of(client.get("/devices/new").text)
    forms = [
        ("/maintenance", {"reason": "r", "scope": "tenant", "starts_at": "2030-01-01T02:00", "repeat": "",
                          "duration_minutes": bad}, "duration_minutes: "),
        ("/devices/bulk", {"action": "set_interval", "scope": "matching", "interval_s": bad}, "interval_s: "),
        ("/status-pages", {"slug": "hostile-numbers", "title": "t", "device_ids": f"1,{bad}"}, "device_ids[1]: "),
    ]
    for path, form, message in forms:
        response = client.post(path, data={"csrf": csrf, **form})
        assert response.status_code == 422, (path, response.status_code)
        assert message in text(response), (path, message)


@pytest.mark.parametrize("minutes", ["1e308", "inf", "-1e308"])
def test_a_rule_duration_past_any_bound_is_refused_naming_the_field(client, minutes) -> None:
    csrf = csrf_of(client.get("/rules").text)
    response = client.post("/rules", data={"csrf": csrf, "metric": "temperature", "kind": "threshold",
                                           "operator": ">", "threshold": "8", "for_min": minutes, "tag": "x"})
    assert response.status_code == 422, response.status_code
    assert "for_min: " in text(response) or "for_s: " in text(response), text(response)[:300]
