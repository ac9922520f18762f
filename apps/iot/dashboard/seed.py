"""Seed the playground: tenant `demo` with one device per simulated device, some of them failing.

Run once by docker compose (`iot seed`) after `iot migrate`, before the dashboard.
Idempotent: a restart finds the tenant and its devices and only re-applies DEMO_API_KEY.

- HTTP devices `sensor-NNN` and TCP devices `gateway-NN` point at the simulator's device ports;
- SEED_FAILING devices `meter-NNN` point at ports on the simulator host where nothing listens, so every
  region's probe is refused and the worker turns them `down` within a couple of intervals.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from redis.asyncio import Redis

from iot import devices, tenants
from iot.db import create_pool
from iot.devices import DeviceSpec
from iot.log import log_fields, setup_logging
from iot.names import slug_problem
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


async def seed(settings: SeedSettings) -> dict[str, object]:
    """Create (or find) the demo tenant and its devices; return what was done."""
    pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        tenant = await tenants.tenant_by_slug(pool, settings.demo_tenant)
        created_tenant = tenant is None
        if tenant is None:
            tenant, _ = await tenants.create_tenant(pool, settings.demo_tenant, "Demo fleet",
                                                    monitor_names=settings.monitor_name_set())
        # A known key, so the README can say which key signs in (the generated one is discarded).
        await pool.execute(tenants.UPDATE_API_KEY, tenant.id, token_hash(settings.demo_api_key.get_secret_value()))
        existing = sum((await devices.state_counts(pool, tenant.id)).values())
        created = 0
        if existing == 0:
            created = len(await devices.create_devices(pool, tenant.id, demo_devices(settings),
                                                       egress=settings.egress_policy()))
            await devices.notify_devices_changed(redis)
        return {"tenant": tenant.slug, "tenant_created": created_tenant, "devices_created": created,
                "devices_existing": existing}
    finally:
        await pool.close()
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    settings = SeedSettings()
    setup_logging(settings.log_level)
    problem = settings_problem(settings)
    if problem:
        log_fields(logger, logging.ERROR, "cannot seed", problem=problem)
        return 2
    result = asyncio.run(seed(settings))
    log_fields(logger, logging.INFO, f"demo ready: open http://{settings.demo_tenant}.{settings.domain} and sign in "
               "with DEMO_API_KEY", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
