"""Per-tenant quotas: devices, scheduled checks per second, metric points per second.

Defaults come from settings (`QUOTA_DEVICES`, `QUOTA_CHECKS_PER_SECOND`, `QUOTA_POINTS_PER_SECOND`); a row
in `tenant_quotas` overrides any of them for one tenant (NULL keeps the default). Devices and check rate
are admitted where devices are created or changed: the devices repository calls `admit` inside its
transaction after `locked_usage` has locked the tenant row, so two concurrent creates cannot both slip
under the limit. Points are metered by the tracker (`iot.tracker.rate_limit`). A change that lowers usage
is always allowed, so a tenant over a lowered quota can still delete, disable or slow down devices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg

from iot.errors import QuotaExceeded

# Count quotas only free up when the tenant deletes devices (or gets a higher quota): retrying sooner is moot.
COUNT_RETRY_AFTER_SECONDS = 3600
_EPSILON = 1e-9  # float sums of 1/interval_s

SELECT_OVERRIDES = "SELECT max_devices, checks_per_second, points_per_second FROM tenant_quotas WHERE tenant_id = $1"
# FOR NO KEY UPDATE: serialises quota checks of one tenant without blocking the foreign-key checks of
# rows that reference the tenant (incidents, deliveries written by the worker).
LOCK_TENANT = "SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE"
SELECT_USAGE = """
SELECT count(*) AS devices,
       coalesce(sum(1.0 / interval_s) FILTER (WHERE enabled AND kind <> 'push'), 0)::float8 AS checks_per_second
FROM devices WHERE tenant_id = $1
"""
UPSERT_OVERRIDES = """
INSERT INTO tenant_quotas (tenant_id, max_devices, checks_per_second, points_per_second) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id) DO UPDATE SET max_devices = $2, checks_per_second = $3, points_per_second = $4,
                                      updated_at = now()
"""


@dataclass(frozen=True, slots=True)
class Quotas:
    devices: int = 20_000
    checks_per_second: float = 500.0
    points_per_second: float = 20_000.0


DEFAULT_QUOTAS = Quotas()


@dataclass(frozen=True, slots=True)
class Usage:
    devices: int
    checks_per_second: float


def check_rate(kind: str, interval_s: int, enabled: bool) -> float:
    """Checks per second (per region) one device asks of the monitors; push devices are never probed."""
    return 1.0 / interval_s if enabled and kind != "push" else 0.0


async def effective(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: int, defaults: Quotas) -> Quotas:
    """The tenant's quotas: its overrides, the defaults for the rest."""
    row = await conn.fetchrow(SELECT_OVERRIDES, tenant_id)
    if row is None:
        return defaults
    return replace(
        defaults,
        devices=defaults.devices if row["max_devices"] is None else row["max_devices"],
        checks_per_second=defaults.checks_per_second if row["checks_per_second"] is None else row["checks_per_second"],
        points_per_second=defaults.points_per_second if row["points_per_second"] is None else row["points_per_second"],
    )


async def usage(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: int) -> Usage:
    row = await conn.fetchrow(SELECT_USAGE, tenant_id)
    return Usage(row["devices"], row["checks_per_second"])


async def locked_usage(conn: asyncpg.Connection, tenant_id: int) -> Usage:
    """The tenant's usage, with its row locked until the caller's transaction ends."""
    await conn.execute(LOCK_TENANT, tenant_id)
    return await usage(conn, tenant_id)


def admit(quotas: Quotas, before: Usage, after: Usage, field: str) -> None:
    """Raise QuotaExceeded when `after` passes a quota that `before` -> `after` grows towards."""
    if after.devices > quotas.devices and after.devices > before.devices:
        raise QuotaExceeded(
            field, f"this tenant may have at most {quotas.devices} devices (it has {before.devices}; this would "
                   f"make {after.devices}); delete devices or ask the operator for a higher quota",
            COUNT_RETRY_AFTER_SECONDS)
    if (after.checks_per_second > quotas.checks_per_second + _EPSILON
            and after.checks_per_second > before.checks_per_second + _EPSILON):
        raise QuotaExceeded(
            field, f"this tenant may schedule at most {quotas.checks_per_second:g} checks per second (the sum of "
                   f"1/interval_s over enabled http, tcp and icmp devices; this would make "
                   f"{after.checks_per_second:.2f}); use longer intervals, disable or delete devices, or ask the "
                   "operator for a higher quota",
            COUNT_RETRY_AFTER_SECONDS)


async def set_overrides(db: asyncpg.Connection | asyncpg.Pool, tenant_id: int, *, max_devices: int | None,
                        checks_per_second: float | None, points_per_second: float | None) -> None:
    """Replace the tenant's overrides (None = the service default)."""
    await db.execute(UPSERT_OVERRIDES, tenant_id, max_devices, checks_per_second, points_per_second)
