"""Seed the playground: tenant `demo` with one device per simulated device, some of them failing.

Run once by docker compose (`iot seed`) after `iot migrate`, before the dashboard, and by `iot demo`.
It converges: every run makes the demo tenant match the settings. Seeded devices (by name) that differ
are updated in place (their history stays), missing ones are created, seeded names the settings no longer
ask for are deleted, devices a user added under other names are left alone, and DEMO_API_KEY is re-applied.

- HTTP devices `sensor-NNN` and TCP devices `gateway-NN` point at the simulator's device ports;
- SEED_FAILING devices `meter-NNN` point at ports on the simulator host where nothing listens, so every
  region's probe is refused and the worker turns them `down` within a couple of intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from dataclasses import fields

import asyncpg
from redis.asyncio import Redis

from iot import waiting
from iot.db import create_pool
from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.log import log_fields, setup_logging
from iot.names import slug_problem
from iot.repo import devices, tenants
from iot.repo.devices import DeviceSpec
from iot.service import load_settings
from iot.settings import SeedSettings
from iot.tokens import token_hash

logger = logging.getLogger("iot.dashboard.seed")


def demo_devices(settings: SeedSettings) -> list[DeviceSpec]:
    host, base, interval = settings.seed_simulator_host, settings.seed_simulator_base_port, settings.seed_interval_s
    timeout = min(2000, interval * 1000)
    specs = [DeviceSpec(f"sensor-{i:03d}", "http", f"http://{host}:{base + i}/", interval, timeout)
             for i in range(settings.seed_devices)]
    first_tcp = base + settings.seed_devices
    specs += [DeviceSpec(f"gateway-{j:02d}", "tcp", f"{host}:{first_tcp + j}", interval, timeout)
              for j in range(settings.seed_tcp_devices)]
    closed = first_tcp + settings.seed_tcp_devices  # first port after the simulated ones: nothing listens
    specs += [DeviceSpec(f"meter-{k:03d}", "http", f"http://{host}:{closed + k}/", interval, timeout)
              for k in range(settings.seed_failing)]
    return specs


def settings_problem(settings: SeedSettings) -> str | None:
    key = settings.demo_api_key.get_secret_value()
    if len(key) < 16:
        return "DEMO_API_KEY must be at least 16 characters; set a longer value in .env"
    if settings.seed_devices < 0 or settings.seed_tcp_devices < 0 or settings.seed_failing < 0:
        return "SEED_DEVICES, SEED_TCP_DEVICES and SEED_FAILING must be >= 0"
    last_port = settings.seed_simulator_base_port + settings.seed_devices + settings.seed_tcp_devices + settings.seed_failing
    if settings.seed_simulator_base_port < 1 or last_port > 65535:
        return f"SEED_SIMULATOR_BASE_PORT {settings.seed_simulator_base_port} + all devices must stay below port 65536"
    return slug_problem(settings.demo_tenant, settings.monitor_name_set())


# Names the seed owns in the demo tenant (demo_devices); anything else there belongs to whoever added it.
SEEDED_NAME = re.compile(r"^(sensor-\d{3,}|gateway-\d{2,}|meter-\d{3,})$")
SPEC_FIELDS = tuple(f.name for f in fields(DeviceSpec))
SELECT_TENANT_DEVICES = f"SELECT id, {', '.join(SPEC_FIELDS)} FROM devices WHERE tenant_id = $1"
ONE_SHOT_WAIT_SECONDS = 60.0


async def converge_devices(
    pool: asyncpg.Pool, tenant_id: int, wanted: list[DeviceSpec], egress: EgressPolicy = PUBLIC_ONLY
) -> dict[str, int]:
    """Make the tenant's seeded devices equal `wanted` (targets vetted by `egress`); return how many were
    created, updated, deleted."""
    current = {row["name"]: row for row in await pool.fetch(SELECT_TENANT_DEVICES, tenant_id)}
    wanted_names = {spec.name for spec in wanted}
    missing = [spec for spec in wanted if spec.name not in current]
    updated = 0
    for spec in wanted:
        row = current.get(spec.name)
        if row is None:
            continue
        changes = {name: getattr(spec, name) for name in SPEC_FIELDS if row[name] != getattr(spec, name)}
        if changes:
            await devices.update_device(pool, tenant_id, row["id"], changes, egress=egress)
            updated += 1
    stale = [row["id"] for name, row in current.items() if SEEDED_NAME.match(name) and name not in wanted_names]
    for device_id in stale:
        await devices.delete_device(pool, tenant_id, device_id)
    created = len(await devices.create_devices(pool, tenant_id, missing, egress=egress)) if missing else 0
    return {"devices_created": created, "devices_updated": updated, "devices_deleted": len(stale),
            "devices_existing": len(current)}


async def seed(settings: SeedSettings) -> dict[str, object]:
    """Create (or find) the demo tenant and converge its devices to the settings; return what was done."""
    await waiting.wait_for(database_url=settings.database_url.get_secret_value(),
                           redis_url=settings.redis_url.get_secret_value(), wait_seconds=ONE_SHOT_WAIT_SECONDS)
    pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        tenant = await tenants.tenant_by_slug(pool, settings.demo_tenant)
        created_tenant = tenant is None
        if tenant is None:
            tenant, _ = await tenants.create_tenant(pool, settings.demo_tenant, "Demo fleet",
                                                    monitor_names=settings.monitor_name_set())
        # A known key, so the docs can say which key signs in (the generated one is discarded).
        demo_key = settings.demo_api_key.get_secret_value()
        await pool.execute(tenants.UPDATE_API_KEY, tenant.id, token_hash(demo_key), tenants.shown_key(demo_key))
        done = await converge_devices(pool, tenant.id, demo_devices(settings), settings.egress_policy())
        if done["devices_created"] or done["devices_updated"] or done["devices_deleted"]:
            await devices.notify_devices_changed(redis)
        return {"tenant": tenant.slug, "tenant_created": created_tenant, **done}
    finally:
        await pool.close()
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iot seed",
        description="Create or update the demo tenant (DEMO_TENANT, key DEMO_API_KEY) with one device per simulated "
        "device and SEED_FAILING devices that go down; re-running converges to the current settings "
        "(SEED_*, see `iot env`).",
    )
    parser.parse_args(argv or [])
    settings = load_settings(SeedSettings)
    setup_logging(settings.log_level)
    problem = settings_problem(settings)
    if problem:
        log_fields(logger, logging.ERROR, "cannot seed", problem=problem)
        return 2
    try:
        result = asyncio.run(seed(settings))
    except waiting.StartupError as exc:
        log_fields(logger, logging.ERROR, f"cannot seed: {exc}")
        return 1
    log_fields(logger, logging.INFO, f"demo ready: open http://{settings.demo_tenant}.{settings.domain} and sign in "
               "with DEMO_API_KEY", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
