"""Helpers for dashboard tests: tenants, devices and SQL on a real database, `iot dashboard` as a process."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from egress_targets import TEST_EGRESS_ALLOW_CIDRS
from iot_processes import Proc, iot_env, wait_http_ok
from servers import free_port

from iot.db import connect
from iot.db.migrate import migrate
from iot.egress import EgressPolicy
from iot.repo import devices, tenants
from iot.repo.devices import DeviceSpec

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "localhost"


@dataclass(frozen=True)
class TenantKey:
    id: int
    slug: str
    api_key: str

    @property
    def host(self) -> str:
        return f"{self.slug}.{DOMAIN}"


@dataclass(frozen=True)
class Dashboard:
    url: str  # http://127.0.0.1:<port>; pass Host: <tenant>.localhost to pick the tenant
    port: int
    database_url: str
    redis_url: str
    acme: TenantKey
    beta: TenantKey

    def client(self, tenant: TenantKey | str, **kwargs) -> httpx.Client:
        host = tenant.host if isinstance(tenant, TenantKey) else tenant
        return httpx.Client(base_url=self.url, headers={"Host": host}, follow_redirects=False, timeout=10, **kwargs)

    def signed_in(self, tenant: TenantKey) -> httpx.Client:
        client = self.client(tenant)
        response = client.post("/signin", data={"api_key": tenant.api_key, "next": "/"})
        assert response.status_code == 303, response.text
        return client


def run(coro):
    return asyncio.run(coro)


def new_tenant(database_url: str, slug: str) -> TenantKey:
    (tenant,) = run(setup_tenants(database_url, (slug,), migrated=True))
    return tenant


async def setup_tenants(database_url: str, slugs: tuple[str, ...], migrated: bool = False) -> list[TenantKey]:
    if not migrated:
        await migrate(database_url)
    conn = await connect(database_url)
    try:
        out = []
        for slug in slugs:
            tenant, key = await tenants.create_tenant(conn, slug, f"{slug.title()} Inc.")
            out.append(TenantKey(tenant.id, tenant.slug, key))
        return out
    finally:
        await conn.close()


def start_dashboard(database_url: str, redis_url: str, log_path: Path, prefix: tuple[str, ...] = (),
                    **env: str) -> tuple[Proc, int]:
    """`iot dashboard` on a free port (`prefix`: a command to run it under, e.g. a hosts-file stub)."""
    port = free_port()
    proc = Proc("dashboard", ["dashboard"], iot_env(
        DATABASE_URL=database_url, REDIS_URL=redis_url, APP_HOST="127.0.0.1", APP_PORT=port, DOMAIN=DOMAIN,
        SESSION_SECRET="test-session-secret-0123456789abcdef", MONITOR_NAMES="frankfurt,amsterdam",
        LOG_LEVEL="warning", **env,
    ), log_path, list(prefix)).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", proc)
    except AssertionError as exc:
        proc.stop()
        raise RuntimeError(f"iot dashboard did not start: {exc}") from None
    return proc, port


async def _create_devices(database_url: str, tenant_id: int, specs: list[DeviceSpec]) -> list[int]:
    conn = await connect(database_url)
    try:
        egress = EgressPolicy.parse(TEST_EGRESS_ALLOW_CIDRS)
        return [c.id for c in await devices.create_devices(conn, tenant_id, specs, egress=egress)]
    finally:
        await conn.close()


def create_devices(database_url: str, tenant: TenantKey, specs: list[DeviceSpec]) -> list[int]:
    return run(_create_devices(database_url, tenant.id, specs))


async def _execute(database_url: str, sql: str, *args) -> list:
    conn = await connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def sql(database_url: str, query: str, *args) -> list:
    """Run SQL directly (to play the worker's part: region states, rollups, incidents)."""
    return run(_execute(database_url, query, *args))


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)
