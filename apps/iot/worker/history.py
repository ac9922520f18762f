"""The leader's history job (migration 0011): partitions ahead, minute -> hourly downsampling, retention.

Runs at the start of each leadership term and then every HISTORY_JOB_SECONDS. A failing round (database
away) is logged and retried next round; it never ends the leadership term.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg

from iot.log import log_fields
from iot.worker import downsample, partitions

logger = logging.getLogger(__name__)


async def history_round(pool: asyncpg.Pool, tables: tuple[partitions.PartitionedTable, ...], *,
                        ahead_days: int, minute_days: int, now: datetime | None = None) -> dict[str, object]:
    """One round of the three jobs; returns what it did (for the log and tests)."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn:
        created = await partitions.ensure_partitions(conn, tables, now, ahead_days)
        done = await downsample.downsample(conn, now, minute_days)
        dropped = await partitions.drop_expired(conn, tables, now)
    return {"created": created, "downsampled": done, "dropped": dropped}


async def run_history_jobs(pool: asyncpg.Pool, term: asyncio.Event, tables: tuple[partitions.PartitionedTable, ...],
                           *, ahead_days: int, minute_days: int, interval_s: float) -> None:
    while not term.is_set():
        try:
            result = await history_round(pool, tables, ahead_days=ahead_days, minute_days=minute_days)
            if result["created"] or result["dropped"]:
                log_fields(logger, logging.INFO, "history partitions changed", created=result["created"],
                           dropped=result["dropped"])
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log_fields(logger, logging.WARNING, "history job failed, retrying next round",
                       error=f"{type(exc).__name__}: {exc}", retry_in_s=interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(term.wait(), timeout=interval_s)
