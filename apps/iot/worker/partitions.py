"""Time partitions of the history tables (migration 0011): created ahead, dropped past retention.

Partitions are named `<table>_pYYYYMMDD` after the UTC day (or first day of the month) they start at, so
their bounds are read from the name, never parsed from catalog text. Both jobs are idempotent: a second
run creates or drops nothing. Rows of the default partitions (written while a partition was missing) are
moved in by `history_attach_partition` and deleted past retention like the partitions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg

Period = Literal["day", "month"]

# Serialises two leaders overlapping in a failover ("iothist" in ASCII).
HISTORY_LOCK_ID = 0x696F7468697374
LOCK = "SELECT pg_advisory_xact_lock($1)"
# Dropping a partition locks its parent exclusively, and creating one locks the default partition: a lock
# that waits behind a long read would queue every insert behind it. Give up instead; the next round retries.
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '3s'"
ATTACH_PARTITION = "SELECT history_attach_partition($1, $2, $3, $4)"
LIST_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass ORDER BY c.relname
"""
# Identifiers come from PartitionedTable constants and catalog names matching PARTITION_NAME, never input.
DROP_PARTITION = "DROP TABLE {name}"
DELETE_EXPIRED_DEFAULT = "DELETE FROM {table}_default WHERE {key} < $1"

PARTITION_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<start>\d{8})$")


@dataclass(frozen=True, slots=True)
class PartitionedTable:
    name: str
    key: str  # the partition key column
    period: Period
    retention_days: int


def history_tables(raw_days: int, minute_days: int, hourly_days: int) -> tuple[PartitionedTable, ...]:
    """The tables of migration 0011 with their retention (settings RETENTION_*_DAYS)."""
    return (
        PartitionedTable("device_metrics", "ts", "day", raw_days),
        PartitionedTable("rollups", "minute", "day", minute_days),
        PartitionedTable("rollups_hourly", "hour", "month", hourly_days),
        # Uptime is computed from the timeline: it is kept as long as the hourly history.
        PartitionedTable("device_state_changes", "at", "month", hourly_days),
    )


def period_start(at: datetime, period: Period) -> datetime:
    at = at.astimezone(UTC)
    day = datetime(at.year, at.month, at.day, tzinfo=UTC)
    return day if period == "day" else day.replace(day=1)


def next_start(start: datetime, period: Period) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def partition_name(table: str, start: datetime) -> str:
    return f"{table}_p{start:%Y%m%d}"


def partition_start(name: str, table: str) -> datetime | None:
    match = PARTITION_NAME.fullmatch(name)
    if match is None or match["table"] != table:
        return None
    return datetime.strptime(match["start"], "%Y%m%d").replace(tzinfo=UTC)


async def ensure_partitions(conn: asyncpg.Connection, tables: Sequence[PartitionedTable], now: datetime,
                            ahead_days: int) -> list[str]:
    """Create the partitions from the current period to `ahead_days` ahead; returns those created."""
    created: list[str] = []
    async with conn.transaction():
        await conn.execute(LOCK, HISTORY_LOCK_ID)
        await conn.execute(LOCK_TIMEOUT)
        for table in tables:
            start = period_start(now, table.period)
            last = period_start(now + timedelta(days=ahead_days), table.period)
            while start <= last:
                end = next_start(start, table.period)
                name = partition_name(table.name, start)
                if await conn.fetchval(ATTACH_PARTITION, table.name, name, start, end):
                    created.append(name)
                start = end
    return created


async def drop_expired(conn: asyncpg.Connection, tables: Sequence[PartitionedTable], now: datetime) -> list[str]:
    """Drop the partitions whose whole range is older than the table's retention; returns those dropped.

    A partition goes only once its newest possible row is past retention, so a table keeps at least its
    retention (up to one period more)."""
    dropped: list[str] = []
    async with conn.transaction():
        await conn.execute(LOCK, HISTORY_LOCK_ID)
        await conn.execute(LOCK_TIMEOUT)
        for table in tables:
            cutoff = now - timedelta(days=table.retention_days)
            for row in await conn.fetch(LIST_PARTITIONS, table.name):
                start = partition_start(row["relname"], table.name)
                if start is not None and next_start(start, table.period) <= cutoff:
                    await conn.execute(DROP_PARTITION.format(name=row["relname"]))
                    dropped.append(row["relname"])
            await conn.execute(DELETE_EXPIRED_DEFAULT.format(table=table.name, key=table.key), cutoff)
    return dropped
