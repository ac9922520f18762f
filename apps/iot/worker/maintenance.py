"""The evaluator's cache of maintenance occurrences: which device is in a window right now.

The evaluator asks only when a device's state changes or a held-back alert is due (never per result), and
the cache answers from memory: per tenant, the occurrences overlapping the next `horizon_s`, with the
device ids each covers (None: the whole tenant). It re-reads every window in one query every
`refresh_seconds`; recurrences are expanded with dateutil (bounded, see `iot.maintenance`). A failed
refresh keeps the last answer: occurrences already expanded stay right until the horizon passes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from iot.errors import InputError
from iot.log import log_fields
from iot.maintenance import Times, occurrences
from iot.repo.maintenance import SELECT_ALL_WINDOWS, SELECT_TAGGED_DEVICES

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Occurrence:
    window_id: int
    reason: str
    start: float  # unix seconds
    end: float
    devices: frozenset[int] | None  # None: every device of the tenant

    def covers(self, device_id: int, at: float) -> bool:
        return self.start <= at < self.end and (self.devices is None or device_id in self.devices)


class MaintenanceCache:
    def __init__(self, pool: asyncpg.Pool, *, refresh_seconds: float = 5.0, horizon_s: float = 3600.0) -> None:
        self._pool = pool
        self._refresh_s = refresh_seconds
        self._horizon_s = horizon_s
        self._by_tenant: dict[int, list[Occurrence]] = {}
        self._refreshed = float("-inf")  # monotonic

    def covering(self, tenant_id: int, device_id: int, at: float) -> Occurrence | None:
        """The occurrence covering the device at `at` (unix seconds), the one ending last if several."""
        found = [o for o in self._by_tenant.get(tenant_id, ()) if o.covers(device_id, at)]
        return max(found, key=lambda o: o.end) if found else None

    async def maybe_refresh(self) -> None:
        if time.monotonic() - self._refreshed >= self._refresh_s:
            await self.refresh()

    async def refresh(self) -> None:
        self._refreshed = time.monotonic()
        try:
            async with self._pool.acquire() as conn:
                windows = await conn.fetch(SELECT_ALL_WINDOWS)
                tagged = [(w["tenant_id"], w["tag"]) for w in windows if w["scope"] == "tag"]
                tag_devices = {
                    (r["tenant_id"], r["tag"]): frozenset(r["ids"])
                    for r in (await conn.fetch(SELECT_TAGGED_DEVICES, [t for t, _ in tagged], [g for _, g in tagged])
                              if tagged else [])
                }
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log_fields(logger, logging.WARNING, "reading maintenance windows failed; keeping the last ones",
                       error=str(exc))
            return
        now = datetime.now(UTC)
        until = now + timedelta(seconds=self._horizon_s)
        by_tenant: dict[int, list[Occurrence]] = {}
        for w in windows:
            if w["scope"] == "tenant":
                devices = None
            elif w["scope"] == "device":
                devices = frozenset((w["device_id"],))
            else:
                devices = tag_devices.get((w["tenant_id"], w["tag"]), frozenset())
            try:
                spans = list(occurrences(Times(w["starts_at"], w["ends_at"], w["rrule"]), now, until))
            except InputError as exc:  # stored before a rule check tightened: skip it, say so
                log_fields(logger, logging.WARNING, "maintenance window skipped", window_id=w["id"], error=str(exc))
                continue
            by_tenant.setdefault(w["tenant_id"], []).extend(
                Occurrence(w["id"], w["reason"], start.timestamp(), end.timestamp(), devices) for start, end in spans)
        self._by_tenant = by_tenant
