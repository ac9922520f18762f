"""Waiting for PostgreSQL and Redis at start-up: one line naming the setting and the address, then quiet retries.

Containers and processes start in any order, so a dependency that does not answer yet is normal: the
first failed attempt logs ONE warning (`DATABASE_URL: cannot reach PostgreSQL at db:5432 (connection
refused); ...`), later attempts log nothing above debug, and the service goes on as soon as it answers.
An answer that will not change by waiting (wrong password, no such database, a malformed URL) stops
the service with a StartupError naming the setting. Passwords never appear: the address is host:port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from iot.log import log_fields

logger = logging.getLogger("iot.startup")
T = TypeVar("T")

ATTEMPT_TIMEOUT_S = 5.0  # one connection attempt; a silent server must not hold the first line back
FIRST_DELAY_S, MAX_DELAY_S = 0.2, 5.0


class StartupError(RuntimeError):
    """A service cannot start (dependency refused it, port taken); the message says what to change."""


@dataclass(frozen=True, slots=True)
class Dependency:
    setting: str  # the environment variable that names it, e.g. DATABASE_URL
    service: str  # PostgreSQL, Redis
    url: str

    @property
    def address(self) -> str:
        """host:port of the URL, without user or password."""
        default_port = {"PostgreSQL": 5432, "Redis": 6379}.get(self.service)
        try:
            parts = urlsplit(self.url)
            host, port = parts.hostname or "localhost", parts.port or default_port
        except ValueError:
            return "(unparsable URL)"
        if parts.scheme == "unix":
            return parts.path
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def scrub(self, text: str) -> str:
        """`text` without the URL's password (driver messages may quote the URL)."""
        try:
            password = urlsplit(self.url).password
        except ValueError:
            password = None
        return text.replace(password, "***") if password else text


def postgres(url: str, setting: str = "DATABASE_URL") -> Dependency:
    return Dependency(setting, "PostgreSQL", url)


def redis(url: str, setting: str = "REDIS_URL") -> Dependency:
    return Dependency(setting, "Redis", url)


# Errors that waiting can cure (server down, starting, busy, unreachable) and those it cannot.
TRANSIENT: dict[str, tuple[type[BaseException], ...]] = {
    "PostgreSQL": (OSError, TimeoutError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
                   asyncpg.PostgresConnectionError, asyncpg.ConnectionDoesNotExistError),
    "Redis": (OSError, TimeoutError, RedisConnectionError, RedisTimeoutError),
}
FATAL: dict[str, tuple[type[BaseException], ...]] = {
    "PostgreSQL": (),
    "Redis": (AuthenticationError, AuthorizationError),  # subclasses of ConnectionError: checked first
}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return f"no answer within {ATTEMPT_TIMEOUT_S:.0f} s"
    if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc):
        return "connection refused"
    return str(exc) or type(exc).__name__


async def until_reachable(dependency: Dependency, attempt: Callable[[], Awaitable[T]], *,
                          wait_seconds: float | None = None) -> T:
    """The result of `attempt()` once it succeeds; retries transient failures quietly.

    `wait_seconds`: give up after this long (one-shot commands); None waits for as long as it takes
    (services, whose orchestrator restarts or health-checks them anyway).
    """
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    delay = FIRST_DELAY_S
    reported = False
    while True:
        try:
            result = await asyncio.wait_for(attempt(), ATTEMPT_TIMEOUT_S)
        except FATAL[dependency.service] as exc:
            raise _refused(dependency, exc) from None
        except TRANSIENT[dependency.service] as exc:
            reason = dependency.scrub(_reason(exc))
            if not reported:
                reported = True
                log_fields(logger, logging.WARNING,
                           f"{dependency.setting}: cannot reach {dependency.service} at {dependency.address} "
                           f"({reason}); retrying quietly until it answers",
                           setting=dependency.setting, address=dependency.address)
            else:
                log_fields(logger, logging.DEBUG, f"{dependency.setting}: still no answer", reason=reason)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise StartupError(
                    f"{dependency.setting}: {dependency.service} at {dependency.address} did not answer within "
                    f"{wait_seconds:.0f} s ({reason}); check {dependency.setting} and that {dependency.service} is up"
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
            continue
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise _refused(dependency, exc) from None
        if reported:
            log_fields(logger, logging.INFO,
                       f"{dependency.setting}: {dependency.service} at {dependency.address} answers",
                       setting=dependency.setting, address=dependency.address)
        return result


def _refused(dependency: Dependency, exc: BaseException) -> StartupError:
    detail = dependency.scrub(str(exc) or type(exc).__name__)
    return StartupError(f"{dependency.setting}: {dependency.service} at {dependency.address} refused us: {detail}; "
                        f"fix {dependency.setting}")


async def wait_for_postgres(url: str, *, wait_seconds: float | None = None) -> None:
    """Return once PostgreSQL at `url` accepts a connection (see `until_reachable`)."""

    async def attempt() -> None:
        conn = await asyncpg.connect(url, timeout=ATTEMPT_TIMEOUT_S)
        await conn.close()

    await until_reachable(postgres(url), attempt, wait_seconds=wait_seconds)


async def wait_for_redis(url: str, *, wait_seconds: float | None = None) -> None:
    """Return once Redis at `url` answers PING (see `until_reachable`)."""

    async def attempt() -> None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=ATTEMPT_TIMEOUT_S,
                                         socket_timeout=ATTEMPT_TIMEOUT_S)
        try:
            await client.ping()
        finally:
            await client.aclose()

    await until_reachable(redis(url), attempt, wait_seconds=wait_seconds)


async def wait_for(*, database_url: str | None = None, redis_url: str | None = None,
                   wait_seconds: float | None = None) -> None:
    """Wait for both at once, so each unreachable one is named within seconds."""
    waits = []
    if database_url is not None:
        waits.append(wait_for_postgres(database_url, wait_seconds=wait_seconds))
    if redis_url is not None:
        waits.append(wait_for_redis(redis_url, wait_seconds=wait_seconds))
    await asyncio.gather(*waits)
