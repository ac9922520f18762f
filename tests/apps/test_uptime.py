"""Uptime from the state timeline: the pure computation, and a device with a scripted failure pattern in
real PostgreSQL (state written through `devices`, recorded by the 0011 trigger) equal to the hand-computed
value to 0.01%, with and without an excluded (maintenance) interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from iot.db.migrate import migrate
from iot.errors import InputError
from iot.repo import history
from iot.uptime import Change, combine, compute_uptime, daily_uptime, merge_intervals
from iot.worker import store

T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)


def test_seconds_per_state_and_percent() -> None:
    u = compute_uptime(T0, T0 + 10 * H, "up", [Change(T0 + 2 * H, "down"), Change(T0 + 3 * H, "degraded"),
                                               Change(T0 + 4 * H, "unknown"), Change(T0 + 5 * H, "up")])
    assert (u.up_seconds, u.degraded_seconds, u.down_seconds, u.no_data_seconds, u.excluded_seconds) == (
        8 * 3600, 3600, 3600, 3600, 0)  # up 2 h + degraded 1 h + up 5 h; the unknown hour is no data
    assert u.percent == pytest.approx(100 * 8 / 9)


def test_excluded_intervals_and_maintenance_state_leave_the_figure() -> None:
    changes = [Change(T0 + 2 * H, "down"), Change(T0 + 4 * H, "up"), Change(T0 + 8 * H, "maintenance"),
               Change(T0 + 9 * H, "up")]
    # one window covers the first outage hour and one up hour; overlapping windows count once
    windows = [(T0 + 1 * H, T0 + 3 * H), (T0 + 2 * H, T0 + 3 * H), (T0 + 20 * H, T0 + 30 * H)]
    u = compute_uptime(T0, T0 + 10 * H, "up", changes, windows)
    assert u.excluded_seconds == 2 * 3600 + 3600  # the window inside the range + the maintenance hour
    assert u.down_seconds == 3600
    assert u.up_seconds == 6 * 3600
    assert u.percent == pytest.approx(100 * 6 / 7)


def test_nothing_observed_has_no_percent() -> None:
    assert compute_uptime(T0, T0 + H, "unknown", []).percent is None
    assert merge_intervals([(T0 + H, T0), (T0, T0)]) == []


def test_daily_buckets_carry_the_state_across_days() -> None:
    days = daily_uptime(T0, T0 + timedelta(days=3), "up", [Change(T0 + 30 * H, "down"), Change(T0 + 54 * H, "up")])
    assert [d.down_seconds for d in days] == [0, 18 * 3600, 6 * 3600]
    assert [round(d.percent or 0, 4) for d in days] == [100.0, 25.0, 75.0]


def test_bad_range_and_sla_are_refused_naming_the_field() -> None:
    with pytest.raises(InputError) as bad_range:
        history.check_range("1y")
    assert bad_range.value.field == "range" and "30d" in bad_range.value.reason
    for bad in (0, 100.5, -1, 99.9999):
        assert history.sla_problem(bad) is not None
    assert history.sla_problem(99.995) is None and history.sla_problem(None) is None


async def _script(conn: asyncpg.Connection, device: int, changes: list[tuple[datetime, str]]) -> None:
    for at, state in changes:  # the evaluator's way: state and state_since together
        await conn.execute("UPDATE devices SET state = $2, state_since = $3 WHERE id = $1", device, state, at)


async def test_scripted_failure_pattern_over_30_days_is_exact(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=30)
    try:
        tenant = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('acme', 'h') RETURNING id")
        other = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('other', 'o') RETURNING id")
        device = await conn.fetchval("INSERT INTO devices (tenant_id, name, kind, target) VALUES "
                                     "($1, 'pump', 'http', 'http://192.0.2.1/') RETURNING id", tenant)
        # up since 40 days ago; every day of the range: down 15 minutes at +3 h, degraded 10 minutes at +12 h
        script = [(now - timedelta(days=40), "up")]
        for day in range(30):
            base = start + timedelta(days=day)
            script += [(base + 3 * H, "down"), (base + 3 * H + timedelta(minutes=15), "up"),
                       (base + 12 * H, "degraded"), (base + 12 * H + timedelta(minutes=10), "up")]
        await _script(conn, device, script)
        await conn.execute("UPDATE devices SET sla_target = 99.9 WHERE id = $1", device)
        report = await history.uptime_report(conn, tenant, device, "30d", now=now)
        window = (start + 3 * H - timedelta(minutes=30), start + 3 * H + timedelta(minutes=45))  # day 0's outage
        excluded = await history.uptime_report(conn, tenant, device, "30d", now=now, excluded=[window])
        foreign = await history.uptime_report(conn, other, device, "30d", now=now)
        day = await history.uptime_report(conn, tenant, device, "24h", now=now)
    finally:
        await conn.close()
    total = 30 * 86400
    down = 30 * 15 * 60
    assert report is not None and excluded is not None and day is not None
    assert report.total.down_seconds == down
    assert report.total.degraded_seconds == 30 * 600
    assert round(report.total.percent, 2) == round(100 * (total - down) / total, 2) == 98.96
    assert report.total.percent == pytest.approx(100 * (total - down) / total, abs=0.01)
    assert report.breach is True  # 98.96 < 99.9
    # the window takes 75 minutes out: 15 of them down, 60 up
    assert excluded.total.excluded_seconds == 75 * 60
    assert excluded.total.down_seconds == down - 900
    assert excluded.total.percent == pytest.approx(100 * (total - down - 3600) / (total - 4500), abs=0.01)
    # 30 daily buckets, the first day starting at a UTC midnight, the last ending now
    assert len(report.days) == 30 and report.days[-1].end == now
    first_day = history.day_start(now) - timedelta(days=29)
    assert report.days[0].start == first_day
    outages = [(start + timedelta(days=d) + 3 * H, start + timedelta(days=d) + 3 * H + timedelta(minutes=15))
               for d in range(30)]
    in_days = sum(max(0.0, (min(e, now) - max(s, first_day)).total_seconds()) for s, e in outages)
    assert sum(d.down_seconds for d in report.days) == in_days
    assert all(d.percent is not None and d.percent < 100 for d in report.days if d.down_seconds)
    assert foreign is None  # another tenant's device is not found
    assert day.total.down_seconds == 900 and day.total.percent == pytest.approx(100 * (86400 - 900) / 86400)


async def test_many_devices_at_once_equal_one_by_one_and_skip_other_tenants(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        tenant = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('acme', 'h') RETURNING id")
        other = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('other', 'o') RETURNING id")
        ids = []
        for n, owner in enumerate((tenant, tenant, tenant, other)):
            device = await conn.fetchval("INSERT INTO devices (tenant_id, name, kind, target) VALUES "
                                         "($1, $2, 'http', 'http://192.0.2.1/') RETURNING id", owner, f"d{n}")
            script = [(now - timedelta(days=95), "up")]
            for day in range(0, 90, n + 1):  # a different pattern per device
                base = now - timedelta(days=90 - day)
                script += [(base, "down"), (base + timedelta(minutes=5 * (n + 1)), "up")]
            await _script(conn, device, script)
            ids.append(device)
        windows = {ids[1]: [(now - timedelta(days=30), now - timedelta(days=29))]}
        many = await history.uptime_reports(conn, tenant, ids + [10**12], "90d", now=now, excluded=windows)
        single = {i: await history.uptime_report(conn, tenant, i, "90d", now=now, excluded=windows.get(i, ()))
                  for i in ids[:3]}
        every = await history.uptime_all_ranges(conn, tenant, ids[0], now=now)
        day = await history.uptime_report(conn, tenant, ids[0], "24h", now=now)
    finally:
        await conn.close()
    assert sorted(many) == ids[:3]  # the other tenant's device and the missing id are absent
    assert many == single
    assert many[ids[1]].total.excluded_seconds > 0
    assert many[ids[0]].total.down_seconds == 90 * 300
    assert every is not None and every["90d"] == many[ids[0]] and every["24h"] == day


def test_combined_uptime_weighs_devices_by_observed_time() -> None:
    a = compute_uptime(T0, T0 + 10 * H, "up", [Change(T0 + 9 * H, "down")])  # 90 %
    b = compute_uptime(T0, T0 + 10 * H, "unknown", [Change(T0 + 8 * H, "up")])  # 100 % of 2 h observed
    both = combine([a, b])
    assert both is not None and both.percent == pytest.approx(100 * 11 / 12)
    assert combine([]) is None


async def test_the_evaluators_state_writes_fill_the_timeline(database_url: str) -> None:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        tenant = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('acme', 'h') RETURNING id")
        device = await conn.fetchval("INSERT INTO devices (tenant_id, name, kind, target) VALUES "
                                     "($1, 'pump', 'http', 'http://192.0.2.1/') RETURNING id", tenant)
        t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        async with conn.transaction():
            await store.write_state_changes(conn, [store.StateChange(device, "up", t.timestamp())])
        async with conn.transaction():
            await store.write_state_changes(conn, [store.StateChange(
                device, "down", (t + timedelta(minutes=4)).timestamp(), incident_kind="down", summary="refused",
                previous="up")])
        async with conn.transaction():  # a replayed change: same state, nothing recorded
            await store.write_state_changes(conn, [store.StateChange(
                device, "down", (t + timedelta(minutes=4)).timestamp(), previous="up")])
        rows = [tuple(r) for r in await conn.fetch(
            "SELECT tenant_id, at, state, previous FROM device_state_changes WHERE device_id = $1 ORDER BY at", device)]
        report = await history.uptime_report(conn, tenant, device, "24h", now=t + timedelta(minutes=10))
    finally:
        await conn.close()
    assert rows == [(tenant, t, "up", "unknown"), (tenant, t + timedelta(minutes=4), "down", "up")]
    assert report is not None and report.total.down_seconds == 360 and report.total.up_seconds == 240
    assert report.total.percent == pytest.approx(40.0)
