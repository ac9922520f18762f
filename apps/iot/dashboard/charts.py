"""Latency and metric charts as plain geometry, drawn server-side as inline SVG by `templates/_chart.html`.

Input is the per-minute rollups (or coarser buckets for the day view) of one device, per region;
output is everything the template needs: one polyline per region (broken at gaps, so a silent
period is not drawn as a straight line), axis ticks and the buckets that had failed checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 28, 14, 30  # room for the axis labels
# Colour-blind friendly palette (Okabe-Ito), one colour per region in name order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@dataclass(frozen=True, slots=True)
class Bucket:
    region: str
    start: datetime
    checks: int
    failures: int
    latency_ms: float | None  # median latency of the bucket


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    span: timedelta
    bucket: timedelta
    tick_every: timedelta
    tick_format: str


WINDOWS = {
    "hour": Window("hour", timedelta(hours=1), timedelta(minutes=1), timedelta(minutes=10), "%H:%M"),
    "day": Window("day", timedelta(days=1), timedelta(minutes=10), timedelta(hours=3), "%H:%M"),
    # Issue 14: longer ranges, drawn from the hourly rollups (buckets as GET /v1/devices/{id}/latency).
    "7d": Window("7d", timedelta(days=7), timedelta(hours=1), timedelta(days=1), "%d %b"),
    "30d": Window("30d", timedelta(days=30), timedelta(hours=6), timedelta(days=5), "%d %b"),
    "90d": Window("90d", timedelta(days=90), timedelta(days=1), timedelta(days=15), "%d %b"),
    # Issue 15: metric charts' 30 days, per hour from the metric rollups.
    "month": Window("month", timedelta(days=30), timedelta(hours=1), timedelta(days=5), "%d %b"),
}


@dataclass
class Series:
    region: str
    color: str
    paths: list[str] = field(default_factory=list)  # SVG polyline "points" attributes
    dots: list[tuple[float, float]] = field(default_factory=list)  # isolated points and the latest one
    last_latency_ms: float | None = None
    checks: int = 0
    failures: int = 0


@dataclass
class Chart:
    window: str
    width: int
    height: int
    plot: tuple[int, int, int, int]  # x0, y0, x1, y1 of the plotting area
    series: list[Series]
    y_ticks: list[tuple[float, str]]  # (y pixel, label)
    x_ticks: list[tuple[float, str]]
    failure_marks: list[tuple[float, float, str]]  # (x, width, tooltip)
    empty: bool


def nice_ceiling(value: float) -> float:
    """The next 1/2/5 x 10^n at or above value (axis maximum)."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def build_chart(buckets: Iterable[Bucket], window: Window, end: datetime, regions: Sequence[str] = (),
                unit: str = " ms") -> Chart:
    """One line per region (metric charts: per metric name); the y axis spans 0 to the peak, or below 0 when
    values are negative (metrics such as a freezer's temperature)."""
    start = end - window.span
    x0, y0, x1, y1 = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    span_s = window.span.total_seconds()

    def x_of(t: datetime) -> float:
        return round(x0 + (t - start).total_seconds() / span_s * (x1 - x0), 1)

    by_region: dict[str, list[Bucket]] = {r: [] for r in regions}
    for b in buckets:
        if start <= b.start <= end:
            by_region.setdefault(b.region, []).append(b)
    values = [b.latency_ms for bs in by_region.values() for b in bs if b.latency_ms is not None]
    peak, low = max(values, default=0.0), min(values, default=0.0)
    y_min = -nice_ceiling(-low * 1.1) if low < 0 else 0.0
    y_max = nice_ceiling(peak * 1.1) if peak > 0 else (0.0 if low < 0 else 100.0)

    def y_of(value: float) -> float:
        return round(y1 - (min(max(value, y_min), y_max) - y_min) / (y_max - y_min) * (y1 - y0), 1)

    series: list[Series] = []
    failures: dict[datetime, tuple[int, int]] = {}
    for i, region in enumerate(sorted(by_region)):
        s = Series(region, PALETTE[i % len(PALETTE)])
        points: list[str] = []
        xy: tuple[float, float] | None = None
        previous: datetime | None = None
        for b in sorted(by_region[region], key=lambda b: b.start):
            s.checks += b.checks
            s.failures += b.failures
            if b.failures:
                done, failed = failures.get(b.start, (0, 0))
                failures[b.start] = (done + b.checks, failed + b.failures)
            if b.latency_ms is None:
                continue
            if previous is not None and b.start - previous > 2 * window.bucket and points:
                _close_segment(s, points, xy)
                points = []
            xy = (x_of(b.start), y_of(b.latency_ms))
            points.append(f"{xy[0]},{xy[1]}")
            previous = b.start
            s.last_latency_ms = b.latency_ms
        if points:
            _close_segment(s, points, xy)
            if xy and xy not in s.dots:
                s.dots.append(xy)  # the latest measurement stands out
        series.append(s)

    y_ticks = [(y_of(v), f"{v:g}{unit}") for v in (y_min + (y_max - y_min) * k / 4 for k in range(5))]
    x_ticks: list[tuple[float, str]] = []
    tick_s = window.tick_every.total_seconds()
    t = datetime.fromtimestamp(math.ceil(start.timestamp() / tick_s) * tick_s, tz=start.tzinfo)
    while t <= end:
        x_ticks.append((x_of(t), t.strftime(window.tick_format)))
        t += window.tick_every
    tip_format = "%H:%M" if window.span <= timedelta(days=1) else "%d %b %H:%M"
    bucket_w = max(1.5, round(window.bucket.total_seconds() / span_s * (x1 - x0), 1))
    marks = [  # kept inside the plot: the newest bucket starts at the right edge
        (min(x_of(t), x1 - bucket_w), bucket_w, f"{t.strftime(tip_format)}: {failed} of {done} checks failed")
        for t, (done, failed) in sorted(failures.items())
    ]
    return Chart(
        window=window.name, width=WIDTH, height=HEIGHT, plot=(x0, y0, x1, y1), series=series,
        y_ticks=y_ticks, x_ticks=x_ticks, failure_marks=marks,
        empty=not any(s.paths for s in series) and not marks,
    )


def _close_segment(series: Series, points: list[str], last: tuple[float, float] | None) -> None:
    series.paths.append(" ".join(points))
    if len(points) == 1 and last is not None:
        series.dots.append(last)  # a lone point would be an invisible line: draw it as a dot


def metric_chart(points: Sequence[tuple[datetime, float, int]], name: str, window: Window, end: datetime) -> Chart:
    """A device's metric (points: time, value or bucket mean, point count) on the latency chart's geometry.

    Raw points come as often as the device sends them: the line breaks only at gaps well beyond its usual
    spacing (the median), not at every gap longer than the window's bucket."""
    times = sorted(ts for ts, _, _ in points)
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    if gaps and gaps[len(gaps) // 2] > window.bucket:
        window = replace(window, bucket=gaps[len(gaps) // 2])
    return build_chart((Bucket(name, ts, count, 0, value) for ts, value, count in points), window, end, [name],
                       unit="")
