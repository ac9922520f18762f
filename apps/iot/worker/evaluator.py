"""Consume monitor results, keep per-region views, decide device states, persist, then acknowledge.

- Results are applied in probe-time order per device and region (`checked_at` is when the probe started):
  a result older than the newest one applied is a late arrival (a slow probe, a slow batch). It is
  counted in the rollups (history) but changes no view, state or incident, so a late 200 can never
  resolve an open incident or mark a failing device UP.
- State changes and incidents are written at once (one transaction per read, only when something
  changed), together with every pending view and rollup.
- Otherwise views and per-minute rollups are written every `flush_seconds` in multi-row statements. Each
  such transaction also records the ids of the result messages it covers (`applied_result_messages`);
  the messages are acknowledged (XACK) only after it commits, and their ids forgotten after the ack. A
  crash before the ack leaves them pending; the next leader claims them (XAUTOCLAIM) and skips those
  whose ids are recorded, so nothing is counted twice.
- Acknowledged results are trimmed from the stream (`iot.worker.trim`), so Redis keeps only what is
  still to be evaluated plus a short inspection window.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from iot import protocol
from iot.log import log_fields
from iot.worker import store
from iot.worker.catalog import Device
from iot.worker.maintenance import MaintenanceCache, Occurrence
from iot.worker.regions import FailureRates, RegionStatus, canary_failures, judge_regions, live_regions
from iot.worker.state import TIMESTAMP_PRECISION_S, RegionView, Thresholds, decide
from iot.worker.trim import StreamTrimmer

logger = logging.getLogger(__name__)

RollupKey = tuple[int, str, int]
STALE_MONITOR_S = 3600.0  # heartbeats / consumers idle this long belong to dead processes  # device_id, region, minute (unix seconds)


class Evaluator:
    def __init__(
        self,
        client: aioredis.Redis,
        pool: asyncpg.Pool,
        devices: Callable[[], dict[int, Device]],
        thresholds: Thresholds,
        *,
        instance: str,
        region_alive_seconds: float,
        region_failure_rate: float = 0.5,
        region_min_checks: int = 20,
        region_window_seconds: float = 30.0,
        region_sample_checks: int = 60,
        read_count: int = 50,
        flush_seconds: float = 2.0,
        reclaim_idle_seconds: float = 10.0,
        trimmer: StreamTrimmer | None = None,
        maintenance: MaintenanceCache | None = None,
    ) -> None:
        self._redis = client
        self._pool = pool
        self._devices = devices
        self.th = thresholds
        self._th_by_retries: dict[int, Thresholds] = {}  # per-device retries, one Thresholds per value
        self.instance = instance
        self._alive = region_alive_seconds
        self._rate_threshold = region_failure_rate
        self._min_checks = region_min_checks
        self.rates = FailureRates(region_window_seconds, region_sample_checks)
        self._trimmer = trimmer
        self._maintenance = maintenance
        self._read_count = read_count
        self._flush_seconds = flush_seconds
        self._reclaim_idle_ms = int(reclaim_idle_seconds * 1000)
        self.views: dict[int, dict[str, RegionView]] = {}
        self.states: dict[int, str] = {}
        # Children whose down/degraded state raised no alert because their parent was failing, and when
        # each parent last stopped failing: a child still failing afterwards gets its own incident.
        self.suppressed: set[int] = set()
        self._push_down: set[int] = set()
        self._parent_recovered_at: dict[int, float] = {}
        # Devices that went down/degraded inside a maintenance window, raising no alert: the occurrence
        # (None when found so at load) and when. Still failing once it has ended, they open their incident.
        self.held: dict[int, tuple[Occurrence | None, float]] = {}
        self._loaded_at = 0.0  # parents that recovered before this leadership term: count from its start
        self.regions: dict[str, RegionStatus] = {}
        self._healthy: frozenset[str] = frozenset()
        self._unacked: list[str] = []  # message ids applied in memory since the last flush
        self._recorded: set[str] = set()  # ... of which already recorded in applied_result_messages
        self._forget: list[str] = []  # acknowledged ids whose records the next transaction deletes
        # Unix time each region last became healthy: its views from before then (from the cut, or its
        # own broken network) are not evidence until re-checked, so rejoining adds no false DOWN.
        self._healthy_since: dict[str, float] = {}
        self._dirty: set[tuple[int, str]] = set()
        self._rollups: dict[RollupKey, list[Any]] = {}
        self._regions_dirty = False
        self._last_flush = time.monotonic()
        self._last_region_refresh = 0.0
        self.results_processed = 0

    # ---- startup -------------------------------------------------------------------------------

    async def load(self) -> None:
        """Views and device states from the database (a new leader continues where the last one stopped).

        Anything left unflushed from an earlier term is dropped: its results are still pending in the
        stream and are reclaimed and applied again against the stored views, so nothing counts twice."""
        self.views.clear()
        self._rollups.clear()
        self._dirty.clear()
        self._unacked.clear()
        self._recorded.clear()
        self._forget.clear()
        async with self._pool.acquire() as conn:
            for row in await conn.fetch(store.SELECT_REGION_VIEWS):
                self.views.setdefault(row["device_id"], {})[row["region"]] = RegionView(
                    last_ok=row["last_ok"], last_latency_ms=row["last_latency_ms"], last_error=row["last_error"],
                    last_checked_at=row["at"] or 0.0, consecutive_failures=row["consecutive_failures"],
                    mean_ms=row["latency_mean_ms"], var_ms2=row["latency_var_ms2"], samples=row["samples"],
                    slow_streak=row["slow_streak"],
                )
        self.states = {device_id: device.state for device_id, device in self._devices().items()}
        async with self._pool.acquire() as conn:
            self.suppressed = {row["id"] for row in await conn.fetch(store.SELECT_SUPPRESSED_CHILDREN)}
            self.held = {row["id"]: (None, row["since"]) for row in await conn.fetch(store.SELECT_HELD_DEVICES)}
        if self._maintenance is not None:
            await self._maintenance.refresh()
        self._parent_recovered_at.clear()
        self._loaded_at = time.time()
        try:
            await self._redis.xgroup_create(protocol.RESULTS_STREAM, protocol.RESULTS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # Earlier workers (restarts get new instance names) with nothing pending are forgotten.
        for consumer in await self._redis.xinfo_consumers(protocol.RESULTS_STREAM, protocol.RESULTS_GROUP):
            name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
            if name != self.instance and consumer["pending"] == 0 and consumer["idle"] > STALE_MONITOR_S * 1000:
                await self._redis.xgroup_delconsumer(protocol.RESULTS_STREAM, protocol.RESULTS_GROUP, name)

    # ---- main loop ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, leading: Callable[[], bool]) -> None:
        """Evaluate while `leading()`; flush and acknowledge everything read before returning."""
        next_reclaim = 0.0
        try:
            while not stop.is_set() and leading():
                if time.monotonic() - self._last_region_refresh >= 1.0:
                    await self.refresh_regions()
                if self._maintenance is not None:
                    await self._maintenance.maybe_refresh()
                messages: list[tuple[Any, dict[Any, Any]]] = []
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + max(1.0, self._reclaim_idle_ms / 2000)
                    messages.extend(await self._reclaim())
                reply = await self._redis.xreadgroup(
                    protocol.RESULTS_GROUP, self.instance, {protocol.RESULTS_STREAM: ">"},
                    count=self._read_count, block=500,
                )
                for _stream, batch in reply or []:
                    messages.extend(batch)
                await self.process(messages)
                if time.monotonic() - self._last_flush >= self._flush_seconds:
                    await self.flush()
        finally:
            # Last flush on the way out (SIGTERM, lost lock): bounded, so a dead database or Redis cannot
            # hold the shutdown; whatever is not acknowledged stays pending for the next leader.
            await self.flush(attempts=5)

    async def _reclaim(self) -> list[tuple[Any, dict[Any, Any]]]:
        """Result batches left pending by a previous (dead) leader."""
        claimed: list[tuple[Any, dict[Any, Any]]] = []
        cursor = "0-0"
        while True:
            reply = await self._redis.xautoclaim(
                protocol.RESULTS_STREAM, protocol.RESULTS_GROUP, self.instance, self._reclaim_idle_ms,
                start_id=cursor, count=500,
            )
            cursor = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
            claimed.extend(m for m in reply[1] if m[1] is not None)
            if cursor == "0-0" or not reply[1]:
                break
        if not claimed:
            return []
        ids = [_id(m[0]) for m in claimed]
        in_memory = set(self._unacked)  # our own pending messages, applied this term, not flushed yet
        stored = {r["stream_id"] for r in await self._pool.fetch(store.SELECT_APPLIED_MESSAGES, ids)}
        fresh = [m for m in claimed if _id(m[0]) not in stored and _id(m[0]) not in in_memory]
        # Applied and stored before a crash, or applied here already: only acknowledged (with the next flush).
        self._unacked.extend(i for i in ids if i in stored and i not in in_memory)
        self._recorded.update(stored)
        log_fields(logger, logging.INFO, "reclaimed result batches", batches=len(claimed),
                   already_applied=len(claimed) - len(fresh))
        return fresh

    async def process(self, messages: list[tuple[Any, dict[Any, Any]]]) -> list[store.StateChange]:
        """Apply result batches to the views and write resulting state changes at once."""
        if not messages:
            return []
        devices = self._devices()
        touched: set[int] = set()
        for message_id, fields in messages:
            self._unacked.append(_id(message_id))
            region = _field(fields, protocol.REGION_FIELD)
            raw = _field(fields, protocol.RESULTS_FIELD)
            if region is None or raw is None:
                continue
            try:
                rows = [(int(r[0]), bool(r[1]), r[2], r[3], float(r[4])) for r in json.loads(raw)]
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                # A malformed batch must not wedge the evaluator: drop it (it is acknowledged with the rest).
                log_fields(logger, logging.ERROR, "malformed result batch dropped", id=self._unacked[-1],
                           error=str(exc))
                continue
            checks = failures = 0
            for device_id, ok, latency, error, checked_at in rows:
                device = devices.get(device_id)
                if device is None:
                    continue  # deleted or disabled meanwhile
                view = self.views.setdefault(device_id, {}).get(region)
                if view is None:
                    view = self.views[device_id][region] = RegionView()
                factor = device.anomaly_factor if device.anomaly_factor is not None else self.th.anomaly_factor
                min_ms = device.anomaly_min_ms if device.anomaly_min_ms is not None else self.th.anomaly_min_ms
                if view.apply(ok, latency, error, checked_at, self.th, factor, min_ms):
                    checks += 1
                    failures += 0 if ok else 1
                    touched.add(device_id)
                    self._dirty.add((device_id, region))
                elif abs(checked_at - view.last_checked_at) <= TIMESTAMP_PRECISION_S:
                    continue  # the very result already applied (a replay): nothing new
                # else: probed before the newest result applied, arrived late: history only
                self._add_rollup(device_id, region, checked_at, ok, latency)
                self.results_processed += 1
            self.rates.add(region, checks, failures)
        changes = self._evaluate(touched, devices)
        if changes:
            await self._write_changes(changes)
        return changes

    def _add_rollup(self, device_id: int, region: str, checked_at: float, ok: bool, latency: float | None) -> None:
        key = (device_id, region, int(checked_at // 60) * 60)
        entry = self._rollups.get(key)
        if entry is None:
            entry = self._rollups[key] = [0, 0, []]
        entry[0] += 1
        if not ok:
            entry[1] += 1
        elif latency is not None:
            entry[2].append(latency)

    def _evaluate(self, touched: set[int], devices: dict[int, Device]) -> list[store.StateChange]:
        now = time.time()
        changes: list[store.StateChange] = []
        for device_id in sorted(touched):
            device = devices[device_id]
            checks_needed = device.anomaly_checks or self.th.anomaly_checks
            # Views older than two intervals (+ the probe's own timeout, since checked_at is when the probe
            # started, + slack) are stale: that region stopped checking the device.
            fresh_after = now - 2 * device.interval_s - device.timeout_ms / 1000.0 - 15
            verdict = decide(self.views.get(device_id, {}), self._healthy, self._th_of(device), checks_needed, fresh_after,
                             self._healthy_since)
            current = self.states.get(device_id, "unknown")
            if verdict.state is None:
                continue
            if verdict.state == current:
                escalation = self._escalation(device, current, verdict, now)
                if escalation is not None:
                    changes.append(escalation)
                continue
            self.states[device_id] = verdict.state
            changes.append(self._change(device, current, verdict.state, verdict, now))
        return changes

    def _th_of(self, device: Device) -> Thresholds:
        """The thresholds for one device: the service's, with the device's own `retries` when it has one."""
        if device.retries is None or device.retries == self.th.failures_to_down:
            return self.th
        th = self._th_by_retries.get(device.retries)
        if th is None:
            th = self._th_by_retries[device.retries] = dataclasses.replace(self.th, failures_to_down=device.retries)
        return th

    def _escalation(self, device: Device, state: str, verdict: Any, now: float) -> store.StateChange | None:
        """A suppressed child still failing on evidence gathered after its parent recovered: its own incident
        (the parent's alert no longer covers it; resolution is never suppressed)."""
        if device.id in self.held:
            return self._after_maintenance(device, state, verdict, now)
        if device.id not in self.suppressed or state not in ("down", "degraded") or device.parent_id is None:
            return None
        if self._parent_failing(device.parent_id):
            return None
        since = self._parent_recovered_at.get(device.parent_id, self._loaded_at)
        views = self.views.get(device.id, {})
        evidence = verdict.failing if state == "down" else verdict.slow
        if not evidence or any(views[r].last_checked_at <= since for r in evidence if r in views):
            return None
        self.suppressed.discard(device.id)
        window = self._window(device, now)
        if window is not None:  # the parent is back, but a maintenance window now holds the alert
            self.held[device.id] = (window, now)
            return None
        change = self._change(device, state, state, verdict, now)
        parent = self._devices().get(device.parent_id)
        parent_name = parent.name if parent is not None else f"device {device.parent_id}"
        return dataclasses.replace(change, summary=f"{change.summary}; still {state} after its parent "
                                   f"{parent_name} recovered", previous=state, escalated=True,
                                   held_text=f"alert suppressed by its parent {parent_name} "
                                   f"(device {device.parent_id}), which was down", held_at=since)

    def _after_maintenance(self, device: Device, state: str, verdict: Any, now: float) -> store.StateChange | None:
        """A device that went down inside a maintenance window: its incident opens once the window is over
        and a check made after its end still fails (a parent failing by then takes the alert instead)."""
        if state not in ("down", "degraded"):
            self.held.pop(device.id, None)
            return None
        if self._window(device, now) is not None:
            return None
        window, since = self.held[device.id]
        if device.parent_id is not None and self._parent_failing(device.parent_id):
            del self.held[device.id]
            self.suppressed.add(device.id)
            return None
        if window is not None and window.end > now:  # deleted or shortened: it ended when first seen gone
            window = dataclasses.replace(window, end=now)
            self.held[device.id] = (window, since)
        views = self.views.get(device.id, {})
        evidence = verdict.failing if state == "down" else verdict.slow
        ended = window.end if window is not None else self._loaded_at
        if not evidence or any(views[r].last_checked_at < ended for r in evidence if r in views):
            return None
        del self.held[device.id]
        change = self._change(device, state, state, verdict, now)
        what = f"maintenance window {window.window_id} ({window.reason})" if window else "a maintenance window"
        return dataclasses.replace(change, summary=f"{change.summary}; still {state} after {what} ended",
                                   previous=state, escalated=True,
                                   held_text=f"alert held back by {what}", held_at=since)

    def _window(self, device: Device, at: float) -> Occurrence | None:
        return None if self._maintenance is None else self._maintenance.covering(device.tenant_id, device.id, at)

    def _change(self, device: Device, old: str, new: str, verdict: Any, now: float) -> store.StateChange:
        if old == "down" and new != "down":
            # Check time of the evidence it recovered on, for its children's escalation (see _escalation).
            views = self.views.get(device.id, {})
            self._parent_recovered_at[device.id] = max(
                (views[r].last_checked_at for r in verdict.passing if r in views), default=now)
        if new not in ("down", "degraded"):
            # A child that never raised an alert recovers silently: there is no incident to resolve.
            notify = device.id not in self.suppressed and device.id not in self.held
            self.suppressed.discard(device.id)
            self.held.pop(device.id, None)
            return store.StateChange(device.id, new, now, previous=old, notify=notify)
        views = self.views.get(device.id, {})
        parent_failing = device.parent_id is not None and self._parent_failing(device.parent_id)
        if new == "down":
            errors = {r: views[r].last_error for r in verdict.failing if r in views}
            summary = f"{device.name} is down: failing from {', '.join(verdict.failing)}"
            first_error = next((e for e in errors.values() if e), None)
            if first_error:
                summary += f" ({first_error})"
            details: dict[str, Any] = {"regions": errors, "need": verdict.need, "previous": old}
        elif warnings := {r: views[r].last_error for r in verdict.slow if r in views and views[r].last_error}:
            # Passing checks with a warning (a TLS certificate close to expiry), not slowness.
            summary = f"{device.name} is degraded: {next(iter(warnings.values()))} from {', '.join(warnings)}"
            details = {"regions": warnings, "need": verdict.need, "previous": old}
        else:
            slow = {
                r: {"latency_ms": views[r].last_latency_ms, "baseline_ms": round(views[r].mean_ms or 0.0, 2)}
                for r in verdict.slow if r in views
            }
            worst = max(slow.values(), key=lambda s: (s["latency_ms"] or 0) - s["baseline_ms"])
            above = (worst["latency_ms"] or 0.0) - worst["baseline_ms"]
            summary = (f"{device.name} is slow: {worst['latency_ms']:.0f} ms against a baseline of "
                       f"{worst['baseline_ms']:.0f} ms (+{above:.0f} ms) from {', '.join(verdict.slow)}")
            details = {"regions": slow, "need": verdict.need, "previous": old}
        if parent_failing:
            # Behind a down gateway: record the state, but the parent's incident is the only alert.
            self.suppressed.add(device.id)
            return store.StateChange(device.id, new, now, None, summary, cause_device_id=device.parent_id,
                                     previous=old, notify=False)
        window = self._window(device, now)
        if window is not None:
            # In maintenance: the state is recorded, the alert waits for the window's end (_after_maintenance).
            self.held.setdefault(device.id, (window, now))
            return store.StateChange(device.id, new, now, None, summary, previous=old, notify=False)
        self.held.pop(device.id, None)  # an alert now: nothing is held back any more
        return store.StateChange(device.id, new, now, new, summary, json.dumps(details), None, previous=old)

    def _parent_failing(self, parent_id: int) -> bool:
        """Parent down, or failing in a healthy region right now (it may go down in this very second:
        a gateway's children often reach quorum before the gateway itself)."""
        if self.states.get(parent_id) == "down" or parent_id in self._push_down:
            return True
        views = self.views.get(parent_id, {})
        return any(views[r].consecutive_failures > 0 for r in self._healthy if r in views)

    async def _write_changes(self, changes: list[store.StateChange]) -> None:
        # Everything pending goes with the changes, in one transaction: the API never shows a device DOWN
        # while its regions still read as before, and the result messages behind them are recorded as
        # applied, so a crash before the next flush neither loses nor doubles a rollup.
        await self._commit(changes)
        for change in changes:
            log_fields(logger, logging.INFO, "device state changed", device_id=change.device_id,
                       state=change.state, incident=change.incident_kind)

    async def _commit(self, changes: list[store.StateChange] | None = None, attempts: int | None = None) -> bool:
        """State changes (if any), dirty views, rollups, region health and the applied message ids in ONE
        transaction; retried with backoff (forever unless `attempts`). True once committed."""
        view_rows = self._view_columns(self._dirty)
        rollup_rows = self._rollup_columns(self._rollups)
        region_rows = self._region_columns() if self._regions_dirty else None
        record = [i for i in self._unacked if i not in self._recorded]
        forget = list(self._forget)
        delay = 0.2
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    if changes:
                        await store.write_state_changes(conn, changes)
                    if view_rows[0]:
                        await conn.execute(store.UPSERT_REGION_VIEWS, *view_rows)
                    if rollup_rows[0]:
                        await conn.execute(store.UPSERT_ROLLUPS, *rollup_rows)
                    if region_rows:
                        await conn.execute(store.ENQUEUE_REGION_EVENTS, *region_rows[:3])
                        await conn.execute(store.UPSERT_REGIONS, *region_rows)
                    if record:
                        await conn.execute(store.RECORD_APPLIED_MESSAGES, record)
                    if forget:
                        await conn.execute(store.FORGET_APPLIED_MESSAGES, forget)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log_fields(logger, logging.WARNING, "writing results failed, retrying",
                           error=str(exc), retry_in_s=delay)
                if attempts is not None:
                    attempts -= 1
                    if attempts <= 0:
                        return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._dirty.clear()
        self._rollups.clear()
        if region_rows:
            self._regions_dirty = False
        self._recorded.update(record)
        del self._forget[: len(forget)]
        return True

    # ---- regions -----------------------------------------------------------------------------------

    async def refresh_regions(self) -> None:
        self._last_region_refresh = time.monotonic()
        # Monitors that stopped long ago (restarts get new instance names) leave the live set for good.
        await self._redis.zremrangebyscore(protocol.MONITOR_HEARTBEATS_KEY, "-inf", time.time() - STALE_MONITOR_S)
        live = await live_regions(self._redis, self._alive)
        failed = await canary_failures(self._redis, max_age_seconds=max(30.0, self._alive * 2))
        statuses = judge_regions(live, failed, self.rates.totals(), rate_threshold=self._rate_threshold,
                                 min_checks=self._min_checks)
        for name, old in self.regions.items():
            if name not in statuses:
                statuses[name] = RegionStatus(name, live=False, healthy=False,
                                              reason="no monitor heartbeat", last_heartbeat_at=old.last_heartbeat_at)
        for name, status in statuses.items():
            old = self.regions.get(name)
            if old is None or (old.healthy, old.live, old.reason) != (status.healthy, status.live, status.reason):
                self._regions_dirty = True
                log_fields(logger, logging.INFO if status.healthy else logging.WARNING, "region status",
                           **status.as_dict())
        self.regions = statuses
        healthy = frozenset(n for n, s in statuses.items() if s.live and s.healthy)
        for name in healthy - self._healthy:
            if self._healthy or self._loaded_at and time.time() - self._loaded_at > 5:
                # rejoined (not merely the first refresh of this term): its older views wait for new checks
                self._healthy_since[name] = time.time()
        self._healthy = healthy
        try:
            self._push_down = {row["id"] for row in await self._pool.fetch(store.SELECT_DOWN_PUSH_DEVICES)}
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log_fields(logger, logging.WARNING, "reading down push devices failed; keeping the last set",
                       error=str(exc))
        if self._regions_dirty:
            await self._redis.hset(
                protocol.REGION_HEALTH_KEY,
                mapping={n: json.dumps({**s.as_dict(), "at": time.time()}) for n, s in statuses.items()},
            )

    # ---- durable flush + ack ----------------------------------------------------------------------

    async def flush(self, attempts: int | None = None) -> None:
        """Commit what is pending (see `_commit`), then XACK the messages it came from and trim the stream.

        Retries with backoff (forever unless `attempts` is given: results then stay pending, unacked).
        """
        self._last_flush = time.monotonic()
        if not self._unacked and not self._regions_dirty:
            return
        if not await self._commit(attempts=attempts):
            return
        ids, self._unacked = self._unacked, []
        if await self._ack(ids):
            self._forget.extend(ids)
        self._recorded.difference_update(ids)
        if self._trimmer is not None:
            try:
                await self._trimmer.trim(protocol.RESULTS_STREAM, protocol.RESULTS_GROUP)
            except (RedisError, OSError) as exc:
                log_fields(logger, logging.WARNING, "trimming results failed", error=str(exc))

    async def _ack(self, ids: list[str], attempts: int = 8) -> bool:
        """XACK in chunks; True when all went through. Giving up is safe: unacknowledged results are
        reclaimed later and skipped, since their ids stay recorded as applied."""
        acked_all = True
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            delay = 0.2
            for _ in range(attempts):
                try:
                    await self._redis.xack(protocol.RESULTS_STREAM, protocol.RESULTS_GROUP, *chunk)
                    break
                except (RedisError, OSError) as exc:
                    log_fields(logger, logging.WARNING, "ack failed, retrying", error=str(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            else:
                acked_all = False
        return acked_all

    def _view_columns(self, keys: Iterable[tuple[int, str]]) -> list[list[Any]]:
        cols: list[list[Any]] = [[] for _ in range(12)]
        for device_id, region in keys:
            view = self.views.get(device_id, {}).get(region)
            if view is None:
                continue
            device = self._devices().get(device_id)
            checks_needed = (device.anomaly_checks if device else None) or self.th.anomaly_checks
            th = self._th_of(device) if device else self.th
            row = (device_id, region, view.state(th, checks_needed), view.last_ok, view.last_latency_ms,
                   view.last_error, view.last_checked_at, view.consecutive_failures, view.mean_ms, view.var_ms2,
                   view.samples, view.slow_streak)
            for col, value in zip(cols, row, strict=True):
                col.append(value)
        return cols

    def _rollup_columns(self, rollups: dict[RollupKey, list[Any]]) -> list[list[Any]]:
        cols: list[list[Any]] = [[] for _ in range(6)]
        for (device_id, region, minute), (checks, failures, latencies) in rollups.items():
            for col, value in zip(
                cols,
                (device_id, region, float(minute), checks, failures,
                 "{" + ",".join(f"{x:.3f}" for x in latencies) + "}"),
                strict=True,
            ):
                col.append(value)
        return cols

    def _region_columns(self) -> list[list[Any]]:
        statuses = list(self.regions.values())
        return [
            [s.name for s in statuses],
            [s.live and s.healthy for s in statuses],
            [s.reason for s in statuses],
            [s.last_heartbeat_at for s in statuses],
        ]


def _id(message_id: bytes | str) -> str:
    return message_id.decode() if isinstance(message_id, bytes) else message_id


def _field(fields: dict[Any, Any], name: str) -> str | None:
    value = fields.get(name.encode(), fields.get(name))
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value
