"""Helpers shared by the long-running services: settings loading, the web apps' start-up checks, Redis client."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import sys
from collections.abc import Callable
from typing import TypeVar

import redis.asyncio as aioredis
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from iot import waiting
from iot.log import log_fields
from iot.published_secrets import published_secrets_in
from iot.waiting import StartupError

S = TypeVar("S", bound=BaseSettings)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it comes with uvicorn[standard], so in every deployment),
    else None: asyncio's own. Services whose time goes into the loop (the monitor's thousands of sockets
    and timers, the simulator's device ports) run on it: the monitor probes 12% (HTTP) to 20% (TCP) more
    checks per second on the same CPU (bench/monitor_throughput.py, back to back)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def tune_gc_for_many_live_objects() -> None:
    """For a process that keeps tens of thousands of objects alive (the monitor's checks, echoes and
    sockets in flight) and allocates several per check: CPython's default thresholds (700, 10, 10) run a
    collection every few hundred allocations, and a full one, which walks every live object, every few
    thousand checks; at ICMP rates that was a quarter of the monitor's CPU (bench/monitor_throughput.py).
    Objects of start-up (modules, settings, metrics) are frozen out of collections altogether, and young
    objects are collected every 20,000 allocations instead: almost all are freed by reference counting
    long before. The older generations keep CPython's ratios (10, 10), so cyclic garbage that outlived a
    collection is still found within a bounded number of allocations (raising them too measured no faster)."""
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def lift_open_files_limit(needed: int) -> tuple[int, int]:
    """Raise the soft limit on open files to `needed` when it is lower, as far as the hard limit allows, and
    return (soft, hard) after. Many hosts and container runtimes start processes at a soft 1,024 under a
    far higher hard limit, which a process may lift itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft, hard


class ListenError(StartupError):
    """The service's HTTP port cannot be bound; the message names the setting to change."""


def load_settings(cls: type[S]) -> S:
    """Settings from the environment; on bad values exit with one line per variable and what to fix."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        lines = []
        for err in exc.errors():
            name = (prefix + "_".join(str(p) for p in err["loc"])).upper()
            secret = any(word in name for word in ("URL", "TOKEN", "SECRET", "PASSWORD"))
            lines.append(f"{name}: {err['msg']}" + ("" if secret else f" (got {err.get('input')!r})"))
        sys.exit("invalid configuration:\n  " + "\n  ".join(lines) + "\nsee `iot env` for every variable")


def ready_to_serve(service: str, settings: BaseSettings, problem: str | None, logger: logging.Logger) -> int | None:
    """The start-up the tracker and the dashboard share: refuse unsafe settings (`problem`: exit code 2),
    warn about published secrets allowed for development, then wait for PostgreSQL and Redis (one line
    naming the variable, then quiet retries). None when the service may serve."""
    if problem:
        log_fields(logger, logging.ERROR, "refusing to start", problem=problem)
        return 2
    published = published_secrets_in(settings)
    if published:
        log_fields(logger, logging.WARNING, "running with published secrets (ALLOW_DEFAULT_SECRETS): development only",
                   settings=published)
    try:
        asyncio.run(waiting.wait_for(database_url=settings.database_url.get_secret_value(),
                                     redis_url=settings.redis_url.get_secret_value()))
    except waiting.StartupError as exc:
        sys.exit(f"{service} cannot start: {exc}")
    return None


def redis_client(url: str) -> aioredis.Redis:
    """Client that retries dropped connections with backoff (Redis restarts must not kill the service)."""
    return aioredis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=5),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=15,
        socket_connect_timeout=5,
    )
