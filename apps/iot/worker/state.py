"""Per-region views of each device and the quorum decision (pure logic, no I/O).

A region's view of a device counts as failing after `failures_to_down` failed checks in a row, as
passing after a successful check, and as slow after `anomaly_checks` checks in a row well above its
EWMA latency baseline. A passing check that carries a warning (TLS certificate expiring soon) makes the view degraded.
The device is
- down      when failing views from healthy live regions >= need = max(quorum_min, ceil(healthy / 2)),
- degraded  when not down and slow views >= need,
- up        when not down/degraded and at least one healthy region passes,
- unchanged when no healthy region has a fresh view (no evidence either way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Thresholds:
    quorum_min: int = 2
    failures_to_down: int = 2
    anomaly_factor: float = 4.0
    anomaly_min_ms: float = 100.0
    anomaly_checks: int = 3
    warmup: int = 10
    alpha: float = 0.1


# Stored views keep microseconds (timestamptz); compare result times within that precision.
TIMESTAMP_PRECISION_S = 1e-5


@dataclass(slots=True)
class RegionView:
    last_ok: bool | None = None
    last_latency_ms: float | None = None
    last_error: str | None = None
    last_checked_at: float = 0.0
    consecutive_failures: int = 0
    mean_ms: float | None = None
    var_ms2: float | None = None
    samples: int = 0
    slow_streak: int = 0

    def apply(self, ok: bool, latency_ms: float | None, error: str | None, checked_at: float,
              th: Thresholds, factor: float, min_ms: float) -> bool:
        """Fold one result in; False (and nothing changed) when it is not newer than the last one."""
        # Redelivered or out-of-order result: already counted. The stored view keeps microseconds only
        # (timestamptz), so a result reclaimed after a crash compares within that precision; two real
        # checks of one device from one region are seconds apart.
        if checked_at <= self.last_checked_at + TIMESTAMP_PRECISION_S:
            return False
        self.last_checked_at = checked_at
        self.last_ok, self.last_latency_ms, self.last_error = ok, latency_ms, error
        if not ok:
            self.consecutive_failures += 1
            return True
        self.consecutive_failures = 0
        if latency_ms is None:
            return True
        if self.samples >= th.warmup and self.mean_ms is not None and self.var_ms2 is not None:
            threshold = self.mean_ms + max(factor * math.sqrt(self.var_ms2), min_ms)
            if latency_ms > threshold:
                # Slow samples do not move the baseline, or a lasting slowdown would become "normal"
                # and hide itself after a few checks.
                self.slow_streak += 1
                return True
        self.slow_streak = 0
        self._update_baseline(latency_ms, th.alpha)
        return True

    def _update_baseline(self, latency_ms: float, alpha: float) -> None:
        if self.mean_ms is None or self.var_ms2 is None:
            self.mean_ms, self.var_ms2 = latency_ms, 0.0
        else:
            diff = latency_ms - self.mean_ms
            incr = alpha * diff
            self.mean_ms += incr
            self.var_ms2 = (1 - alpha) * (self.var_ms2 + diff * incr)
        self.samples += 1

    def state(self, th: Thresholds, anomaly_checks: int) -> str:
        if self.consecutive_failures >= th.failures_to_down:
            return "down"
        # A passing check with an error text is a warning from the probe (a TLS certificate close to
        # expiry): degraded, like a slow streak.
        if self.last_ok and (self.slow_streak >= anomaly_checks or self.last_error is not None):
            return "degraded"
        if self.last_ok:
            return "up"
        return "unknown"


def quorum_need(healthy_regions: int, quorum_min: int) -> int:
    return max(quorum_min, math.ceil(healthy_regions / 2))


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str | None  # None: no evidence, keep the current state
    failing: tuple[str, ...]
    slow: tuple[str, ...]
    passing: tuple[str, ...]
    need: int


def decide(views: dict[str, RegionView], healthy: frozenset[str], th: Thresholds, anomaly_checks: int,
           fresh_after: float, healthy_since: dict[str, float] | None = None) -> Verdict:
    """Device state from the views of healthy live regions checked after `fresh_after` (unix time) and
    after the region last became healthy (`healthy_since`: older views are from its bad time)."""
    failing: list[str] = []
    slow: list[str] = []
    passing: list[str] = []
    for region in sorted(healthy):
        view = views.get(region)
        since = max(fresh_after, healthy_since.get(region, 0.0)) if healthy_since else fresh_after
        if view is None or view.last_checked_at < since:
            continue
        region_state = view.state(th, anomaly_checks)
        if region_state == "down":
            failing.append(region)
        elif region_state in ("up", "degraded"):
            passing.append(region)
            if region_state == "degraded":
                slow.append(region)
    need = quorum_need(len(healthy), th.quorum_min)
    if len(failing) >= need:
        state: str | None = "down"
    elif len(slow) >= need:
        state = "degraded"
    elif passing:
        state = "up"
    else:
        state = None
    return Verdict(state, tuple(failing), tuple(slow), tuple(passing), need)
