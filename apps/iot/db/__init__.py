"""PostgreSQL access shared by every service: connection pools with JSON codecs and startup retry."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import asyncpg

from iot.log import log_fields

logger = logging.getLogger(__name__)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb/json columns (incident details, webhook payloads) come back as Python objects.
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the same codecs as the pool (for scripts and migrations)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, wait_seconds: float = 60.0
) -> asyncpg.Pool:
    """A pool, retrying with backoff while the database is not reachable yet (containers start in any order).

    Broken connections are replaced by asyncpg on the next acquire, so an outage after startup needs no
    extra handling here.
    """
    deadline = time.monotonic() + wait_seconds
    delay = 0.2
    while True:
        try:
            return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log_fields(logger, logging.WARNING, "database not reachable yet, retrying",
                       error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
