"""The leader's tick loop: reload devices when they change, plan due checks, dispatch them in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

import asyncpg
import redis.asyncio as aioredis

from iot import protocol
from iot.log import log_fields
from iot.sealed import SecretBox
from iot.worker.catalog import Device, load_devices
from iot.worker.dispatch import Dispatcher
from iot.worker.planner import DEFAULT_BATCH_MAX_BYTES, Schedule, batch_payloads
from iot.worker.regions import live_regions
from iot.worker.trim import StreamTrimmer

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        client: aioredis.Redis,
        pool: asyncpg.Pool,
        *,
        batch_size: int,
        tick_seconds: float,
        region_alive_seconds: float,
        max_catchup_seconds: int,
        batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES,
        trimmer: StreamTrimmer | None = None,
        box: SecretBox | None = None,
    ) -> None:
        self._redis = client
        self._box = box  # opens sealed check options (SECRETS_KEY)
        self._pool = pool
        self._dispatcher = Dispatcher(client, trimmer)
        self._batch_size = batch_size
        self._batch_max_bytes = batch_max_bytes
        self._tick = tick_seconds
        self._alive = region_alive_seconds
        self._max_catchup = max_catchup_seconds
        self.devices: dict[int, Device] = {}
        self.schedule = Schedule([])
        self._version: bytes | None = None
        self._loaded = False
        self._planned_until: int | None = None
        # figures for /status
        self.live_regions: list[str] = []
        self.lag_seconds: float | None = None
        self._dispatched: deque[tuple[float, int]] = deque()

    async def reload_if_changed(self) -> bool:
        version = await self._redis.get(protocol.DEVICES_VERSION_KEY)
        if self._loaded and version == self._version:
            return False
        self.devices = await load_devices(self._pool, self._box)
        self.schedule = Schedule(self.devices.values(), self._batch_max_bytes)
        if self.schedule.oversize:
            log_fields(logger, logging.ERROR, "devices not scheduled: their check entry is larger than "
                       "BATCH_MAX_BYTES (shorten the target or raise the setting)",
                       devices=self.schedule.oversize[:20], count=len(self.schedule.oversize),
                       batch_max_bytes=self._batch_max_bytes)
        self._version, self._loaded = version, True
        log_fields(logger, logging.INFO, "devices loaded", devices=self.schedule.device_count,
                   version=version.decode() if version else None)
        return True

    def became_leader(self) -> None:
        """Forget local progress: resume from what the previous leader recorded in Redis."""
        self._planned_until = None
        self._loaded = False

    async def tick(self, token: str) -> int:
        """Plan and dispatch every second not yet planned up to now; returns batches sent."""
        await self.reload_if_changed()
        if self._planned_until is None:
            recorded = await self._redis.get(protocol.WORKER_PLANNED_UNTIL_KEY)
            self._planned_until = int(recorded) if recorded is not None else int(time.time()) - 1
        regions = sorted(await live_regions(self._redis, self._alive))
        self.live_regions = regions
        # The clock is read after every await: the seconds planned end at the second the batches are stamped
        # with. Read before a slow reply, a tick would stamp second N+1 on a plan that ends at N, and the
        # next tick would plan N+1 again: the devices due then checked twice in one interval.
        now = time.time()
        current = int(now)
        first = max(self._planned_until + 1, current - self._max_catchup)
        if first > current:
            return 0
        fragments = self.schedule.due_between(first, current)
        payloads = batch_payloads(fragments, self._batch_size, self._batch_max_bytes)
        outcome = await self._dispatcher.dispatch(token, regions, payloads, planned_until=current, sent=now)
        if outcome.fenced_out:
            log_fields(logger, logging.WARNING, "lost the lock while dispatching; batches refused",
                       refused=outcome.fenced_out)
            return outcome.batches
        self._planned_until = current
        self.lag_seconds = round(time.time() - first, 3)
        self._dispatched.append((time.monotonic(), len(fragments) * len(regions)))
        return outcome.batches

    def checks_per_second(self, span: float = 10.0) -> float:
        now = time.monotonic()
        while self._dispatched and self._dispatched[0][0] < now - span:
            self._dispatched.popleft()
        return round(sum(n for _, n in self._dispatched) / span, 1)

    async def run(self, stop: asyncio.Event, token: Callable[[], str | None]) -> None:
        """Tick while this process leads (`token()` not None)."""
        while not stop.is_set():
            current_token = token()
            if current_token is None:
                return
            await self.tick(current_token)
            # Wake just after the next second boundary so each second is planned once, on time.
            delay = max(self._tick - (time.time() % 1.0) + 0.01, 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
