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


def combine(parts: Iterable[Uptime]) -> Uptime | None:
    """Several devices' uptime over the same range as one (a status page, a tag): seconds summed, so each
    device weighs by the time it was observed. None for no parts."""
    items = list(parts)
    if not items:
        return None
    return Uptime(min(u.start for u in items), max(u.end for u in items),
                  *(sum(getattr(u, f) for u in items) for f in (
                      "up_seconds", "degraded_seconds", "down_seconds", "excluded_seconds", "no_data_seconds")))


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping; empty and reversed intervals are dropped."""
    merged: list[Interval] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def compute_uptime(start: datetime, end: datetime, initial_state: str, changes: Iterable[Change],
                   excluded: Iterable[Interval] = ()) -> Uptime:
    """Seconds per state over [start, end): `initial_state` holds at `start` until the first change."""
    return _buckets([start, end], initial_state, _moves(changes), excluded)[0]


def daily_uptime(start: datetime, end: datetime, initial_state: str, changes: Sequence[Change],
                 excluded: Iterable[Interval] = ()) -> list[Uptime]:
    """One Uptime per day from `start` (a day boundary) to `end`, the last day cut at `end`."""
    bounds = _day_bounds(start, end)
    return _buckets(bounds, initial_state, _moves(changes), excluded) if len(bounds) > 1 else []


def uptime_with_days(start: datetime, first_day: datetime, end: datetime, initial_state: str,
                     changes: Iterable[Change], excluded: Iterable[Interval] = ()) -> tuple[Uptime, list[Uptime]]:
    """compute_uptime over [start, end) and daily_uptime from `first_day` (start <= first_day) in one sweep."""
    days = _day_bounds(first_day, end)
    bounds = ([start] if start < first_day else []) + days
    buckets = _buckets(bounds, initial_state, _moves(changes), excluded)
    daily = buckets[1:] if start < first_day else buckets
    total = Uptime(start, end, *(sum(getattr(b, f) for b in buckets) for f in (
        "up_seconds", "degraded_seconds", "down_seconds", "excluded_seconds", "no_data_seconds")))
    return total, daily


def _moves(changes: Iterable[Change]) -> list[tuple[float, str]]:
    return sorted(((c.at.timestamp(), c.state) for c in changes), key=lambda m: m[0])  # stable: ties keep order


def _day_bounds(start: datetime, end: datetime) -> list[datetime]:
    bounds = [start]
    while bounds[-1] < end:
        bounds.append(min(bounds[-1] + timedelta(days=1), end))
    return bounds


# Totals per bucket, indexed: available (up + degraded), degraded, down, excluded, no data.
_AVAILABLE, _DEGRADED, _DOWN, _EXCLUDED, _NO_DATA = range(5)


def _buckets(bounds: list[datetime], state: str, moves: list[tuple[float, str]],
             excluded: Iterable[Interval]) -> list[Uptime]:
    """One sweep over the changes and the bucket bounds, in epoch seconds (a 90-day page of 500 devices is
    45,000 buckets: datetime arithmetic per bucket would dominate)."""
    edges = [b.timestamp() for b in bounds]
    windows = [(s.timestamp(), e.timestamp()) for s, e in merge_intervals(excluded)]
    totals = [[0.0] * 5 for _ in range(len(edges) - 1)]
    cursor = [0]  # the first window that can still overlap a segment: segments come in time order
    i = 0
    while i < len(moves) and moves[i][0] <= edges[0]:  # changes up to the start set the initial state
        state = moves[i][1]
        i += 1
    for k in range(len(edges) - 1):
        t, hi = edges[k], edges[k + 1]
        while i < len(moves) and moves[i][0] < hi:
            _add(totals[k], state, t, moves[i][0], windows, cursor)
            t, state = moves[i][0], moves[i][1]
            i += 1
        _add(totals[k], state, t, hi, windows, cursor)
    return [Uptime(bounds[k], bounds[k + 1], *(totals[k][n] for n in (_AVAILABLE, _DEGRADED, _DOWN, _EXCLUDED, _NO_DATA)))
            for k in range(len(totals))]


def _add(totals: list[float], state: str, start: float, end: float, windows: Sequence[tuple[float, float]],
         cursor: list[int]) -> None:
    """Add [start, end) in `state`; `windows` are merged and sorted, and `cursor` skips those that ended
    before an earlier segment (a status page: 45,000 segments against an hourly window's 2,000 occurrences)."""
    if end <= start:
        return
    span = end - start
    if state == "maintenance":
        totals[_EXCLUDED] += span
        return
    excluded = 0.0
    j = cursor[0]
    while j < len(windows) and windows[j][1] <= start:
        j += 1
    cursor[0] = j
    while j < len(windows) and windows[j][0] < end:
        s, e = windows[j]
        excluded += min(e, end) - max(s, start)
        j += 1
    totals[_EXCLUDED] += excluded
    counted = span - excluded
    if state in AVAILABLE:
        totals[_AVAILABLE] += counted
        if state == "degraded":
            totals[_DEGRADED] += counted
    elif state == "down":
        totals[_DOWN] += counted
    else:
        totals[_NO_DATA] += counted
