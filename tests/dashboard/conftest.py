"""Fixtures for dashboard tests: one migrated database, tenants acme and beta, and `iot dashboard` running
as a real process, shared by the tests of a module (starting them per test would cost seconds each).
Tests that change a tenant (key rotation) create their own tenant with `harness.new_tenant`."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from dashboard.harness import Dashboard, TenantKey, run, setup_tenants, start_dashboard

_databases = itertools.count()


@pytest.fixture(scope="module")
def dashboard(postgres_server, redis_server, tmp_path_factory) -> Iterator[Dashboard]:
    database_url = postgres_server.create_database(f"dashboard_{next(_databases)}")
    acme, beta = run(setup_tenants(database_url, ("acme", "beta")))
    log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    proc, port = start_dashboard(database_url, redis_server.url, log)
    try:
        yield Dashboard(f"http://127.0.0.1:{port}", port, database_url, redis_server.url, acme, beta)
    finally:
        proc.stop()


@pytest.fixture
def tenant_pair(dashboard) -> tuple[TenantKey, TenantKey]:
    return dashboard.acme, dashboard.beta
