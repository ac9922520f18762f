"""PostgreSQL access shared by every service: connection pools with JSON codecs and startup retry."""

from __future__ import annotations

import json

import asyncpg

from iot import waiting


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
    dsn: str, *, min_size: int = 1, max_size: int = 10, wait_seconds: float | None = 60.0
) -> asyncpg.Pool:
    """A pool, waiting while the database is not reachable yet (containers start in any order): one line
    naming DATABASE_URL, then quiet retries (`iot.waiting`); `wait_seconds=None` waits indefinitely.

    Broken connections are replaced by asyncpg on the next acquire, so an outage after startup needs no
    extra handling here.
    """
    return await waiting.until_reachable(
        waiting.postgres(dsn),
        lambda: asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                    timeout=waiting.ATTEMPT_TIMEOUT_S),
        wait_seconds=wait_seconds,
    )
