"""`iot worker`: leader election, the scheduler and the evaluator, plus /health and /status.

Every worker process competes for the leader lock; the leader schedules and evaluates, standbys wait
and take over within the lock expiry when the leader dies. SIGTERM: finish the current tick, flush and
acknowledge evaluated results, release the lock so a standby takes over at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from iot import db, protocol, waiting
from iot.http_server import Listener, serve
from iot.log import log_fields, setup_logging
from iot.service import ListenError, StartupError, load_settings, redis_client
from iot.settings import WorkerSettings
from iot.worker.app import build_app
from iot.worker.evaluator import Evaluator
from iot.worker.history import run_history_jobs
from iot.worker.lock import LeaderLock
from iot.worker.maintenance import MaintenanceCache
from iot.worker.metric_rules import run_metric_rules
from iot.worker.outbox import OutboxSender
from iot.worker.partitions import history_tables
from iot.worker.scheduler import Scheduler
from iot.worker.silence import run_silence_watch
from iot.worker.state import Thresholds
from iot.worker.trim import StreamTrimmer

logger = logging.getLogger("iot.worker")

TRANSIENT = (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class WorkerService:
    def __init__(self, settings: WorkerSettings, client: aioredis.Redis, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.instance = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self._redis = client
        self._pool = pool
        self.lock = LeaderLock(client, self.instance, settings.lock_ttl_seconds)
        self.scheduler = Scheduler(
            client, pool, batch_size=settings.batch_size, tick_seconds=settings.tick_seconds,
            region_alive_seconds=settings.region_alive_seconds, max_catchup_seconds=settings.max_catchup_seconds,
            batch_max_bytes=settings.batch_max_bytes,
            trimmer=StreamTrimmer(client, keep_s=settings.stream_keep_seconds,
                                  max_age_s=settings.checks_max_age_seconds),
            box=settings.secret_box(),
        )
        # One cache of maintenance windows for the evaluator and the silence watch (push devices).
        self.maintenance = MaintenanceCache(pool)
        self.evaluator = Evaluator(
            client, pool, lambda: self.scheduler.devices,
            Thresholds(
                quorum_min=settings.quorum_min, failures_to_down=settings.failures_to_down,
                anomaly_factor=settings.anomaly_factor, anomaly_min_ms=settings.anomaly_min_ms,
                anomaly_checks=settings.anomaly_checks, warmup=settings.anomaly_warmup, alpha=settings.ewma_alpha,
            ),
            instance=self.instance, region_alive_seconds=settings.region_alive_seconds,
            region_failure_rate=settings.region_failure_rate, region_min_checks=settings.region_min_checks,
            region_window_seconds=settings.region_window_seconds,
            region_sample_checks=settings.region_sample_checks, read_count=settings.results_read_count,
            reclaim_idle_seconds=settings.lock_ttl_seconds,
            # results nobody evaluated stay up to a day (a worker outage); evaluated ones go after the keep
            trimmer=StreamTrimmer(client, keep_s=settings.stream_keep_seconds, max_age_s=86_400),
            maintenance=self.maintenance,
        )
        self.webhooks = OutboxSender(
            pool, egress=settings.egress_policy(), per_tenant=settings.webhook_tenant_round_limit,
            timeout_s=settings.webhook_timeout_seconds, max_attempts=settings.webhook_max_attempts,
            backoff_base_s=settings.webhook_backoff_seconds,
            backoff_cap_s=settings.webhook_backoff_cap_seconds,
            secret_box=settings.secret_box(), smtp=settings, domain=settings.domain,
        )

    async def status(self) -> dict[str, Any]:
        holder = None
        with contextlib.suppress(RedisError, OSError):
            raw = await self._redis.get(protocol.WORKER_LOCK_KEY)
            holder = raw.decode().split(":", 1)[1] if raw else None
        leading = self.lock.held
        return {
            "instance": self.instance,
            "leader": leading,
            "leader_instance": holder,
            "devices_scheduled": self.scheduler.schedule.device_count if leading else None,
            "checks_dispatched_per_second": self.scheduler.checks_per_second() if leading else None,
            "scheduling_lag_seconds": self.scheduler.lag_seconds if leading else None,
            "live_regions": self.scheduler.live_regions if leading else None,
            "regions": [s.as_dict() for s in self.evaluator.regions.values()] if leading else None,
            "results_processed": self.evaluator.results_processed,
            "webhooks_delivered": self.webhooks.delivered,
        }

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                if await self.lock.acquire():
                    log_fields(logger, logging.INFO, "became leader", instance=self.instance, fence=self.lock.fence)
                    await self._lead(stop)
                    delay = 0.5
                    continue
            except TRANSIENT as exc:
                log_fields(logger, logging.WARNING, "worker loop failed, retrying", error=str(exc), retry_in_s=delay)
                with contextlib.suppress(*TRANSIENT):
                    await self.lock.release()
                await _wait(stop, delay)
                delay = min(delay * 2, 5.0)
                continue
            await _wait(stop, self.settings.lock_ttl_seconds / 4)  # standby: poll the lock
        with contextlib.suppress(*TRANSIENT):
            await self.lock.release()

    async def _lead(self, stop: asyncio.Event) -> None:
        """One leadership term: renew the lock, tick, evaluate; ends on stop, lock loss or an error."""
        term = asyncio.Event()
        self.scheduler.became_leader()
        await self.scheduler.reload_if_changed()
        await self.evaluator.load()

        async def renew() -> None:
            while not term.is_set():
                await _wait(term, self.lock.ttl_ms / 3000)
                if term.is_set():
                    return
                if not await self.lock.renew():
                    log_fields(logger, logging.WARNING, "lost the leader lock", instance=self.instance)
                    return

        async def watch_stop() -> None:
            await stop.wait()

        tasks = [
            asyncio.create_task(renew()),
            asyncio.create_task(self.scheduler.run(term, lambda: self.lock.token if self.lock.held else None)),
            asyncio.create_task(self.evaluator.run(term, lambda: self.lock.held)),
            asyncio.create_task(watch_stop()),
            asyncio.create_task(run_silence_watch(self._pool, term, maintenance=self.maintenance)),
            asyncio.create_task(self._history_jobs(term)),
            asyncio.create_task(run_metric_rules(self._pool, term, period_s=self.settings.metric_rules_period_seconds,
                                                 lookback_s=self.settings.metric_rules_lookback_seconds)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            term.set()
            results = await asyncio.gather(*tasks[:3], *tasks[4:], return_exceptions=True)
        finally:
            for task in tasks:  # also when this term itself is cancelled: no orphan keeps renewing
                task.cancel()
        errors = [r for r in results if isinstance(r, BaseException)]
        if stop.is_set() or errors:
            await self.lock.release()
        if errors:
            raise errors[0]

    async def _history_jobs(self, term: asyncio.Event) -> None:
        """Partitions ahead, downsampling and retention, for this leadership term."""
        s = self.settings
        tables = history_tables(s.retention_raw_days, s.retention_minute_days, s.retention_hourly_days)
        await run_history_jobs(self._pool, term, tables, ahead_days=s.partitions_ahead_days,
                               minute_days=s.retention_minute_days, interval_s=s.history_job_seconds)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


async def run(settings: WorkerSettings) -> None:
    redis_url = settings.redis_url.get_secret_value()
    await waiting.wait_for(database_url=settings.database_url.get_secret_value(), redis_url=redis_url)
    pool = await db.create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=6)
    client = redis_client(redis_url)
    service = WorkerService(settings, client, pool)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = await serve(settings.app_host, Listener(build_app(service.status), "APP_PORT", settings.app_port))
    log_fields(logger, logging.INFO, "worker started", instance=service.instance, port=settings.app_port)
    # Every worker delivers webhooks (rows are claimed with SKIP LOCKED), leader or standby.
    sender = asyncio.create_task(service.webhooks.run(stop))
    try:
        await service.run(stop)
    finally:
        stop.set()
        await sender
        await servers.close()
        await pool.close()
        await client.aclose()
        log_fields(logger, logging.INFO, "worker stopped", instance=service.instance)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iot worker", description="Scheduler + evaluator; configured by environment variables (see `iot env`)."
    )
    parser.parse_args(argv)
    settings = load_settings(WorkerSettings)
    setup_logging(settings.log_level)
    try:
        asyncio.run(run(settings))
    except (ListenError, StartupError) as exc:
        sys.exit(f"worker cannot start: {exc}")
    return 0
