"""Throughput figures for /health and Prometheus metrics for /metrics, in one object per process."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class MonitorMetrics:
    def __init__(self, region: str) -> None:
        self.region = region
        self.registry = CollectorRegistry()
        self.checks = Counter(
            "iot_monitor_checks_total", "Checks probed and stored, by kind and outcome.", ["kind", "outcome"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "iot_monitor_checks_dropped_total",
            "Checks not probed: `late` could not start before the device's next check was due (its tenant "
            "was at its share of the monitor, or the monitor was full), `overflow` exceeded its tenant's queue.",
            ["reason"], registry=self.registry,
        )
        self.batches = Counter("iot_monitor_batches_total", "Check batches completed and acknowledged.",
                               registry=self.registry)
        self.reclaimed = Counter("iot_monitor_reclaimed_batches_total",
                                 "Batches taken over from a dead consumer (XAUTOCLAIM).", registry=self.registry)
        self.lost_batches = Counter("iot_monitor_lost_batches_total",
                                    "Batches another monitor took over while this one still worked on them.",
                                    registry=self.registry)
        self.write_errors = Counter("iot_monitor_result_write_errors_total",
                                    "Failed attempts to write a group of results (retried).", registry=self.registry)
        self.latency = Histogram(
            "iot_monitor_check_latency_seconds", "Latency of successful checks.", ["kind"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry,
        )
        self.inflight = Gauge("iot_monitor_inflight_checks", "Checks being probed now.", ["lane"],
                              registry=self.registry)
        self.queued = Gauge("iot_monitor_queued_checks", "Checks taken from the stream, waiting to start.",
                            registry=self.registry)
        self.held_batches = Gauge("iot_monitor_held_batches", "Batches taken and not yet acknowledged.",
                                  registry=self.registry)
        self.last_batch_age = Gauge("iot_monitor_last_batch_age_seconds",
                                    "Seconds since results were last stored.", registry=self.registry)
        self.last_batch_age.set_function(lambda: self.last_batch_age_s() or 0.0)
        self._last_batch_at: float | None = None
        self._window: deque[tuple[float, int]] = deque()
        self._latency_by_kind: dict[str, Histogram] = {}

    def record_results(self, kinds_outcomes: list[tuple[str, bool | None, float | None]]) -> None:
        """Checks whose results were just stored (one group of the result writer)."""
        if not kinds_outcomes:
            return
        now = time.monotonic()
        self._last_batch_at = now
        counts: dict[tuple[str, bool], int] = {}
        histograms = self._latency_by_kind
        for kind, ok, latency_ms in kinds_outcomes:
            counts[(kind, bool(ok))] = counts.get((kind, bool(ok)), 0) + 1
            if ok and latency_ms is not None:
                histogram = histograms.get(kind)
                if histogram is None:
                    histogram = histograms[kind] = self.latency.labels(kind)
                histogram.observe(latency_ms / 1000.0)
        for (kind, ok), n in counts.items():
            self.checks.labels(kind, "up" if ok else "down").inc(n)
        self._window.append((now, len(kinds_outcomes)))
        self._trim(now)

    def _trim(self, now: float, span: float = 10.0) -> None:
        while self._window and self._window[0][0] < now - span:
            self._window.popleft()

    def checks_per_second(self, span: float = 10.0) -> float:
        now = time.monotonic()
        self._trim(now, span)
        return round(sum(n for _, n in self._window) / span, 1)

    def last_batch_age_s(self) -> float | None:
        """Seconds since results were last stored (the /health field keeps its historic name)."""
        if self._last_batch_at is None:
            return None
        return round(time.monotonic() - self._last_batch_at, 3)
