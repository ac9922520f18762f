"""`iot migrate`: apply the versioned SQL files in `migrations/` exactly once each.

- Versions are the file names without `.sql` (`0001_init`), applied in lexical order and recorded in
  `schema_migrations`; running again applies nothing (idempotent).
- A session-level advisory lock serialises concurrent runs (two deploys starting at once): the second
  waits, then finds everything applied.
- Each migration runs in its own transaction together with its `schema_migrations` row, so a failing
  migration leaves no half-applied schema behind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from importlib import resources

import asyncpg

from iot.db import connect
from iot.log import log_fields, setup_logging
from iot.service import load_settings
from iot.settings import CommonSettings
from iot.waiting import StartupError, wait_for_postgres

logger = logging.getLogger(__name__)

# Arbitrary constant shared by every `iot migrate` process ("iotmigr" in ASCII, fits in a bigint).
MIGRATION_LOCK_ID = 0x696F746D696772

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
ACQUIRE_LOCK = "SELECT pg_advisory_lock($1)"
RELEASE_LOCK = "SELECT pg_advisory_unlock($1)"
SELECT_APPLIED = "SELECT version FROM schema_migrations"
RECORD_APPLIED = "INSERT INTO schema_migrations (version) VALUES ($1)"


def available_migrations() -> list[tuple[str, str]]:
    """(version, sql) for every migration file shipped in the package, in order."""
    folder = resources.files("iot.db").joinpath("migrations")
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda e: e.name
    )
    return [(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")) for entry in files]


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; return the versions this call applied (empty when up to date)."""
    conn = await connect(dsn)
    try:
        await conn.execute(ACQUIRE_LOCK, MIGRATION_LOCK_ID)
        try:
            return await _apply_pending(conn)
        finally:
            await conn.execute(RELEASE_LOCK, MIGRATION_LOCK_ID)
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection) -> list[str]:
    await conn.execute(CREATE_MIGRATIONS_TABLE)
    done = {row["version"] for row in await conn.fetch(SELECT_APPLIED)}
    applied: list[str] = []
    for version, sql in available_migrations():
        if version in done:
            continue
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(RECORD_APPLIED, version)
        log_fields(logger, logging.INFO, "migration applied", version=version)
        applied.append(version)
    return applied


ONE_SHOT_WAIT_SECONDS = 60.0  # a one-shot job gives up (exit 1) when the database never answers


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iot migrate", description="Apply database migrations to DATABASE_URL (idempotent)."
    )
    parser.parse_args(argv)
    settings = load_settings(CommonSettings)
    setup_logging(settings.log_level)
    dsn = settings.database_url.get_secret_value()
    try:
        asyncio.run(wait_for_postgres(dsn, wait_seconds=ONE_SHOT_WAIT_SECONDS))
        applied = asyncio.run(migrate(dsn))
    except StartupError as exc:
        log_fields(logger, logging.ERROR, f"migration failed: {exc}")
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        log_fields(logger, logging.ERROR, "migration failed; check DATABASE_URL and the database log",
                   error=f"{type(exc).__name__}: {exc}")
        return 1
    log_fields(logger, logging.INFO, "database up to date", applied=applied)
    return 0
