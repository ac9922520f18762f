"""Uptime from a device's state timeline: exact seconds per state over a range, with excluded intervals.

Pure functions (no database): the caller passes the state at the start of the range, the changes inside
it, and the intervals to exclude (maintenance windows, or any list of (start, end)). Rules:
- `up` and `degraded` count as available (a slow answer is an answer), `down` as downtime;
- `unknown` (never checked, paused, before the device existed) counts neither way: it is "no data";
- excluded time, and time in the `maintenance` state, is left out of both and reported separately;
- uptime % = available / (available + downtime); None when nothing was observed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

AVAILABLE = ("up", "degraded")
Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Change:
    at: datetime
    state: str


@dataclass(frozen=True, slots=True)
class Uptime:
    start: datetime
    end: datetime
    up_seconds: float  # up + degraded
    degraded_seconds: float
    down_seconds: float
    excluded_seconds: float  # maintenance (windows or state), outside the figure
    no_data_seconds: float  # unknown

    @property
    def observed_seconds(self) -> float:
        return self.up_seconds + self.down_seconds

    @property
    def percent(self) -> float | None:
        if self.observed_seconds <= 0:
            return None
        return 100.0 * self.up_seconds / self.observed_seconds


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping; empty and reversed intervals are dropped."""
    merged: list[Interval] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap(start: datetime, end: datetime, intervals: Sequence[Interval]) -> float:
    total = 0.0
    for s, e in intervals:
        if e <= start:
            continue
        if s >= end:
            break
        total += (min(e, end) - max(s, start)).total_seconds()
    return total


def compute_uptime(start: datetime, end: datetime, initial_state: str, changes: Iterable[Change],
                   excluded: Iterable[Interval] = ()) -> Uptime:
    """Seconds per state over [start, end): `initial_state` holds at `start` until the first change."""
    windows = merge_intervals(excluded)
    totals = {"available": 0.0, "degraded": 0.0, "down": 0.0, "excluded": 0.0, "no_data": 0.0}
    state, since = initial_state, start
    for change in sorted(changes, key=lambda c: c.at):
        at = min(max(change.at, start), end)
        _add(totals, state, since, at, windows)
        state, since = change.state, at
    _add(totals, state, since, end, windows)
    return Uptime(start, end, totals["available"], totals["degraded"], totals["down"], totals["excluded"],
                  totals["no_data"])


def _add(totals: dict[str, float], state: str, start: datetime, end: datetime, windows: Sequence[Interval]) -> None:
    if end <= start:
        return
    span = (end - start).total_seconds()
    if state == "maintenance":
        totals["excluded"] += span
        return
    excluded = _overlap(start, end, windows)
    totals["excluded"] += excluded
    counted = span - excluded
    if state in AVAILABLE:
        totals["available"] += counted
        if state == "degraded":
            totals["degraded"] += counted
    elif state == "down":
        totals["down"] += counted
    else:
        totals["no_data"] += counted


def daily_uptime(start: datetime, end: datetime, initial_state: str, changes: Sequence[Change],
                 excluded: Iterable[Interval] = ()) -> list[Uptime]:
    """One Uptime per day from `start` (a day boundary) to `end`, the last day cut at `end`."""
    ordered = sorted(changes, key=lambda c: c.at)
    windows = merge_intervals(excluded)
    days: list[Uptime] = []
    state, i, day = initial_state, 0, start
    while day < end:
        day_end = min(day + timedelta(days=1), end)
        inside = []
        while i < len(ordered) and ordered[i].at < day_end:
            inside.append(ordered[i])
            i += 1
        days.append(compute_uptime(day, day_end, state, inside, windows))
        if inside:
            state = inside[-1].state
        day = day_end
    return days
