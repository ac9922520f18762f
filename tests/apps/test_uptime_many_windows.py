"""iot.uptime with many excluded intervals (a status page: 90 daily buckets per component against every
occurrence of an hourly maintenance window): the sweep skips windows already past, and the seconds per
bucket still equal a minute-by-minute count for random timelines and windows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from iot.uptime import Change, daily_uptime, merge_intervals

START = datetime(2026, 1, 1, tzinfo=UTC)
STATES = ("up", "down", "degraded", "unknown", "maintenance")


def _by_minute(end: datetime, initial: str, changes: list[Change], excluded: list[tuple[datetime, datetime]]):
    windows = merge_intervals(excluded)
    days, day = [], START
    while day < end:
        counts = {"available": 0, "down": 0, "excluded": 0, "none": 0}
        t = day
        while t < min(day + timedelta(days=1), end):
            state = initial
            for c in changes:
                if c.at <= t:
                    state = c.state
            if state == "maintenance" or any(s <= t < e for s, e in windows):
                counts["excluded"] += 60
            elif state in ("up", "degraded"):
                counts["available"] += 60
            elif state == "down":
                counts["down"] += 60
            else:
                counts["none"] += 60
            t += timedelta(minutes=1)
        days.append(counts)
        day += timedelta(days=1)
    return days


def test_random_timelines_and_windows_match_a_minute_by_minute_count() -> None:
    rng = random.Random(14)
    end = START + timedelta(days=3)
    for _ in range(12):
        changes = sorted((Change(START + timedelta(minutes=rng.randrange(3 * 1440)), rng.choice(STATES))
                          for _ in range(rng.randrange(12))), key=lambda c: c.at)
        excluded = []
        for _ in range(rng.randrange(40)):
            at = START + timedelta(minutes=rng.randrange(-60, 3 * 1440))
            excluded.append((at, at + timedelta(minutes=rng.randrange(1, 300))))
        got = daily_uptime(START, end, "up", changes, excluded)
        for bucket, want in zip(got, _by_minute(end, "up", changes, excluded), strict=True):
            assert (round(bucket.up_seconds), round(bucket.down_seconds), round(bucket.excluded_seconds),
                    round(bucket.no_data_seconds)) == (want["available"], want["down"], want["excluded"], want["none"])


def test_an_hourly_window_over_90_days_excludes_exactly_its_minutes() -> None:
    end = START + timedelta(days=90)
    hourly = [(START + timedelta(hours=h), START + timedelta(hours=h, minutes=5)) for h in range(90 * 24)]
    days = daily_uptime(START, end, "up", [Change(START + timedelta(days=45, hours=1, minutes=2), "down")], hourly)
    assert len(days) == 90
    assert all(round(d.excluded_seconds) == 24 * 5 * 60 for d in days)
    # down from day 45 01:02: the 5-minute windows are left out of the downtime too
    assert round(days[44].down_seconds) == 0
    assert round(days[45].down_seconds) == (24 * 60 - 62) * 60 - (22 * 5 * 60 + 3 * 60)
    assert round(days[89].down_seconds) == (24 * 60 - 24 * 5) * 60
