"""History of one device (migration 0011): uptime from the state timeline, latency series, SLA target.

Rollups carry no tenant id: every function first loads the device with `tenant_id` in the WHERE
(SELECT_DEVICE_HEAD), so another tenant's id behaves exactly like a missing one, and only then reads
rollups by device id. The state timeline has the tenant id and is filtered on it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from iot.errors import InputError
from iot.inputs import id_problem
from iot.repo._db import Executor, connection
from iot.uptime import Change, Interval, Uptime, uptime_with_days

RangeName = Literal["24h", "7d", "30d", "90d"]


@dataclass(frozen=True, slots=True)
class Range:
    name: str
    span: timedelta
    days: int  # daily buckets shown (the last one ends now)
    source: Literal["minute", "hourly"]  # rollups the latency series reads
    bucket: timedelta  # latency series bucket width


RANGES: dict[str, Range] = {
    "24h": Range("24h", timedelta(hours=24), 1, "minute", timedelta(minutes=10)),
    "7d": Range("7d", timedelta(days=7), 7, "hourly", timedelta(hours=1)),
    "30d": Range("30d", timedelta(days=30), 30, "hourly", timedelta(hours=6)),
    "90d": Range("90d", timedelta(days=90), 90, "hourly", timedelta(days=1)),
}
RANGE_NAMES = tuple(RANGES)
# How far back anything the ranges show can reach (the first daily bucket starts at midnight).
LOOKBACK = max(r.span for r in RANGES.values()) + timedelta(days=1)

SELECT_DEVICE_HEAD = """
SELECT id, name, state, state_since, created_at, sla_target FROM devices WHERE tenant_id = $1 AND id = $2
"""
SELECT_STATE_CHANGES = """
SELECT at, state, previous FROM device_state_changes
WHERE tenant_id = $1 AND device_id = $2 AND at >= $3 AND at < $4
ORDER BY at
"""
SELECT_DEVICE_HEADS = """
SELECT id, name, state, state_since, created_at, sla_target FROM devices
WHERE tenant_id = $1 AND id = ANY($2::bigint[])
"""
SELECT_STATE_CHANGES_MANY = """
SELECT device_id, at, state, previous FROM device_state_changes
WHERE tenant_id = $1 AND device_id = ANY($2::bigint[]) AND at >= $3 AND at < $4
ORDER BY device_id, at
"""
MAX_DEVICES_PER_CALL = 5000


UPDATE_SLA_TARGET = """
UPDATE devices SET sla_target = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING id
"""

# Buckets of $3 over [$2, $4): checks and failures summed, percentiles weighted by checks (exact when a
# bucket holds one source row), the worst latency kept.
_LATENCY_SERIES = """
SELECT region, date_bin($3::interval, {column}, timestamptz '2000-01-01 00:00:00+00') AS bucket,
       sum(checks)::int AS checks, sum(failures)::int AS failures,
       sum(latency_p50 * checks) FILTER (WHERE latency_p50 IS NOT NULL)
         / nullif(sum(checks) FILTER (WHERE latency_p50 IS NOT NULL), 0) AS latency_p50,
       sum(latency_p95 * checks) FILTER (WHERE latency_p95 IS NOT NULL)
         / nullif(sum(checks) FILTER (WHERE latency_p95 IS NOT NULL), 0) AS latency_p95,
       max(latency_max) AS latency_max
FROM {table}
WHERE device_id = $1 AND {column} >= $2 AND {column} < $4
GROUP BY region, bucket
ORDER BY region, bucket
"""
SELECT_MINUTE_SERIES = _LATENCY_SERIES.format(table="rollups", column="minute")
SELECT_HOURLY_SERIES = _LATENCY_SERIES.format(table="rollups_hourly", column="hour")


@dataclass(frozen=True, slots=True)
class HistoryDevice:
    id: int
    name: str
    state: str
    state_since: datetime
    created_at: datetime
    sla_target: float | None


@dataclass(frozen=True, slots=True)
class UptimeReport:
    device: HistoryDevice
    range: Range
    total: Uptime
    days: list[Uptime]

    @property
    def breach(self) -> bool | None:
        """True when the range's uptime is under the SLA target; None without a target or data."""
        if self.device.sla_target is None or self.total.percent is None:
            return None
        return self.total.percent < self.device.sla_target


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    region: str
    start: datetime
    checks: int
    failures: int
    latency_p50: float | None
    latency_p95: float | None
    latency_max: float | None


def check_range(name: str) -> Range:
    if name not in RANGES:
        raise InputError("range", f"must be one of {', '.join(RANGE_NAMES)}, e.g. range=30d")
    return RANGES[name]


def day_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


async def device_head(db: Executor, tenant_id: int, device_id: int) -> HistoryDevice | None:
    if id_problem(device_id):
        return None
    row = await db.fetchrow(SELECT_DEVICE_HEAD, tenant_id, device_id)
    return None if row is None else _head(row)


def _head(row: Mapping[str, Any]) -> HistoryDevice:
    values = dict(row)
    target = values.pop("sla_target")
    return HistoryDevice(**values, sla_target=float(target) if target is not None else None)


def _state_at(at: datetime, rows: list, device: HistoryDevice) -> str:
    """The state at `at`: the previous state of the first change after it, else the current state."""
    for row in rows:
        if row["at"] >= at:
            return row["previous"]
    return device.state


def _window_start(span: Range, now: datetime) -> tuple[datetime, datetime]:
    """(start of the range, first day bucket): the changes needed start at the earlier one."""
    return now - span.span, day_start(now) - timedelta(days=span.days - 1)


def _report(device: HistoryDevice, rows: list, span: Range, now: datetime, excluded: list[Interval]) -> UptimeReport:
    range_start, first_day = _window_start(span, now)  # range_start <= first_day for every range
    changes = [Change(r["at"], r["state"]) for r in rows if r["at"] >= range_start]
    total, days = uptime_with_days(range_start, first_day, now, _state_at(range_start, rows, device), changes,
                                   excluded)
    return UptimeReport(device, span, total, days)


async def uptime_report(db: Executor, tenant_id: int, device_id: int, range_name: str, *,
                        now: datetime | None = None, excluded: Iterable[Interval] = ()) -> UptimeReport | None:
    """Uptime over the range ending `now` and per UTC day; `excluded` intervals (maintenance windows) are
    left out of the figure and counted in `excluded_seconds`. None: no such device for this tenant."""
    reports = await uptime_reports(db, tenant_id, [device_id], range_name, now=now,
                                   excluded={device_id: list(excluded)})
    return reports.get(device_id)


async def uptime_reports(db: Executor, tenant_id: int, device_ids: Sequence[int], range_name: str, *,
                         now: datetime | None = None,
                         excluded: Mapping[int, Sequence[Interval]] | None = None) -> dict[int, UptimeReport]:
    """`uptime_report` of many devices in two queries (a status page's components); devices of other
    tenants and missing ones are absent from the answer. `excluded`: intervals per device id."""
    span = check_range(range_name)
    now = now or datetime.now(UTC)
    ids = sorted({i for i in device_ids if not id_problem(i)})
    if len(ids) > MAX_DEVICES_PER_CALL:
        raise InputError("device_ids", f"at most {MAX_DEVICES_PER_CALL} devices per call; split the list")
    if not ids:
        return {}
    since = min(_window_start(span, now))
    async with connection(db) as conn:
        heads = {r["id"]: _head(r) for r in await conn.fetch(SELECT_DEVICE_HEADS, tenant_id, ids)}
        rows: dict[int, list] = {i: [] for i in heads}
        for r in await conn.fetch(SELECT_STATE_CHANGES_MANY, tenant_id, list(heads), since, now):
            rows[r["device_id"]].append(r)
    excluded = excluded or {}
    return {i: _report(head, rows[i], span, now, list(excluded.get(i, ()))) for i, head in heads.items()}


async def uptime_all_ranges(db: Executor, tenant_id: int, device_id: int, *, now: datetime | None = None,
                            excluded: Iterable[Interval] = ()) -> dict[str, UptimeReport] | None:
    """The device's uptime over every range (24h..90d) from one read of its 90-day timeline."""
    now = now or datetime.now(UTC)
    longest = max(RANGES.values(), key=lambda r: r.span)
    since = min(_window_start(longest, now))
    async with connection(db) as conn:
        device = await device_head(conn, tenant_id, device_id)
        if device is None:
            return None
        rows = await conn.fetch(SELECT_STATE_CHANGES, tenant_id, device_id, since, now)
    windows = list(excluded)
    return {name: _report(device, rows, span, now, windows) for name, span in RANGES.items()}


async def latency_series(db: Executor, tenant_id: int, device_id: int, range_name: str, *,
                         now: datetime | None = None) -> tuple[HistoryDevice, Range, list[LatencyPoint]] | None:
    """The device's latency per region over the range: minute rollups for 24h, hourly ones beyond."""
    span = check_range(range_name)
    now = now or datetime.now(UTC)
    async with connection(db) as conn:
        device = await device_head(conn, tenant_id, device_id)
        if device is None:
            return None
        query = SELECT_MINUTE_SERIES if span.source == "minute" else SELECT_HOURLY_SERIES
        rows = await conn.fetch(query, device_id, now - span.span, span.bucket, now)
    points = [
        LatencyPoint(r["region"], r["bucket"], r["checks"], r["failures"], _float(r["latency_p50"]),
                     _float(r["latency_p95"]), _float(r["latency_max"]))
        for r in rows
    ]
    return device, span, points


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def sla_problem(target: float | None) -> str | None:
    if target is None:
        return None
    if not 0 < target <= 100:
        return f"must be a percentage above 0 and at most 100, e.g. 99.9 (got {target})"
    if Decimal(str(target)).as_tuple().exponent < -3:  # type: ignore[operator]
        return f"at most 3 decimals, e.g. 99.995 (got {target})"
    return None


async def set_sla_target(db: Executor, tenant_id: int, device_id: int, target: float | None) -> bool:
    """Set (or clear with None) the device's SLA target; False: no such device for this tenant."""
    problem = sla_problem(target)
    if problem:
        raise InputError("sla_target", problem)
    if id_problem(device_id):
        return False
    return await db.fetchval(UPDATE_SLA_TARGET, tenant_id, device_id, target) is not None
