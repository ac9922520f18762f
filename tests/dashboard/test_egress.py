"""Issue 12, case 6 in the dashboard: the add-device form, the CSV import, the device edit form and the
webhook settings refuse internal addresses, on a dashboard process with no allow-list (production)."""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterator

import httpx
import pytest
from egress_targets import (
    INTERNAL_HOSTS,
    bracket,
    hosts_stub_command,
    http_target,
    tcp_target,
    write_hosts_stub,
)

from dashboard.harness import (
    Dashboard,
    create_devices,
    csrf_of,
    run,
    setup_tenants,
    sql,
    start_dashboard,
)
from iot.repo.devices import DeviceSpec

_databases = itertools.count()


@pytest.fixture(scope="module")
def production_dashboard(postgres_server, redis_server, tmp_path_factory) -> Iterator[Dashboard]:
    database_url = postgres_server.create_database(f"dashboard_egress_{next(_databases)}")
    acme, beta = run(setup_tenants(database_url, ("acme", "beta")))
    directory = tmp_path_factory.mktemp("dashboard-egress")
    # no allow-list, and a resolver that knows the internal names of INTERNAL_HOSTS
    stub = tuple(hosts_stub_command(write_hosts_stub(directory)))
    proc, port = start_dashboard(database_url, redis_server.url, directory / "dashboard.log", stub,
                                 EGRESS_ALLOW_CIDRS="")
    try:
        yield Dashboard(f"http://127.0.0.1:{port}", port, database_url, redis_server.url, acme, beta)
    finally:
        proc.stop()


def text(response: httpx.Response) -> str:
    return html.unescape(response.text)


def test_the_add_device_form_refuses_every_internal_target(production_dashboard: Dashboard) -> None:
    client = production_dashboard.signed_in(production_dashboard.acme)
    csrf = csrf_of(client.get("/devices/new").text)
    accepted = []
    for host in INTERNAL_HOSTS:
        for kind, target in (("http", http_target(host, 80)), ("tcp", tcp_target(host, 22)), ("icmp", host)):
            response = client.post("/devices", data={"csrf": csrf, "name": f"{kind}-{host}", "kind": kind,
                                                     "target": target, "interval_s": "60", "timeout_ms": "5000"})
            if response.status_code != 422 or "target:" not in text(response):
                accepted.append((kind, target, response.status_code))
    assert accepted == []
    assert not sql(production_dashboard.database_url, "SELECT 1 FROM devices")
    response = client.post("/devices", data={"csrf": csrf, "name": "meta", "kind": "http",
                                              "target": "http://169.254.169.254/latest/meta-data/"})
    assert "monitors only probe public internet addresses" in text(response)


def test_a_csv_import_with_one_internal_target_names_its_line_and_adds_nothing(production_dashboard) -> None:
    client = production_dashboard.signed_in(production_dashboard.acme)
    csrf = csrf_of(client.get("/devices/new").text)
    fleet = ("name,kind,target,interval_s\nok-1,http,https://pump-1.example.com/health,30\n"
             "redis,tcp,localhost:6379,30\nok-2,icmp,93.184.215.14,60\n")
    response = client.post("/devices/import", data={"csrf": csrf, "csv_text": fleet})
    assert response.status_code == 422
    assert "line 3: target: 'localhost' is this machine" in text(response)
    assert not sql(production_dashboard.database_url, "SELECT 1 FROM devices WHERE name IN ('ok-1', 'ok-2')")


def test_editing_a_device_cannot_point_it_inside(production_dashboard) -> None:
    (device_id,) = create_devices(production_dashboard.database_url, production_dashboard.beta,
                                  [DeviceSpec("edge", "tcp", "93.184.215.14:502")])
    client = production_dashboard.signed_in(production_dashboard.beta)
    csrf = csrf_of(client.get(f"/devices/{device_id}/edit").text)
    for target in ("10.0.1.11:4646", "[fd00:a9fe:a9fe::1]:80", "0x7f000001:6379"):
        response = client.post(f"/devices/{device_id}", data={"csrf": csrf, "name": "edge", "kind": "tcp",
                                                               "target": target, "interval_s": "60",
                                                               "timeout_ms": "5000", "enabled": "on"})
        assert response.status_code == 422 and "target:" in text(response), target
    row = sql(production_dashboard.database_url, "SELECT target FROM devices WHERE id = $1", device_id)[0]
    assert row["target"] == "93.184.215.14:502"


def test_webhook_settings_refuse_internal_urls_and_plain_http(production_dashboard) -> None:
    client = production_dashboard.signed_in(production_dashboard.beta)
    csrf = csrf_of(client.get("/settings").text)
    for url in [f"https://{bracket(h)}/hook" for h in INTERNAL_HOSTS] + ["http://hooks.example.com/iot"]:
        response = client.post("/settings/webhook", data={"csrf": csrf, "webhook_url": url, "webhook_secret": ""})
        assert response.status_code == 422 and "webhook url:" in text(response), url
    row = sql(production_dashboard.database_url, "SELECT webhook_url FROM tenants WHERE slug = 'beta'")[0]
    assert row["webhook_url"] is None
