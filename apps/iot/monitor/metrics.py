"""Throughput figures for /health and Prometheus metrics for /metrics, in one object per process."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily

LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class LatencyHistogram:
    """Latency of successful checks by kind, as a Prometheus histogram counted a group at a time.

    prometheus_client's Histogram takes a lock and walks the buckets per observation, which at tens of
    thousands of checks per second costs as much as an ICMP probe; here a group of results is one loop
    of bisections, and the histogram is built when /metrics is scraped.
    """

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe_many(self, kind: str, seconds: list[float]) -> None:
        counts = self._counts.get(kind)
        if counts is None:
            counts = self._counts[kind] = [0] * (len(LATENCY_BUCKETS_S) + 1)
            self._sums[kind] = 0.0
        for value in seconds:
            counts[bisect_left(LATENCY_BUCKETS_S, value)] += 1
        self._sums[kind] += sum(seconds)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily("iot_monitor_check_latency_seconds", "Latency of successful checks.",
                                       labels=["kind"])
        for kind, counts in self._counts.items():
            buckets, total = [], 0
            for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), counts, strict=True):
                total += count
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
            family.add_metric([kind], buckets, self._sums[kind])
        yield family


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
        self.latency = LatencyHistogram()
        self.registry.register(self.latency)
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

    def record_results(self, kinds_outcomes: list[tuple[str, bool | None, float | None]]) -> None:
        """Checks whose results were just stored (one group of the result writer)."""
        if not kinds_outcomes:
            return
        now = time.monotonic()
        self._last_batch_at = now
        counts: dict[tuple[str, bool], int] = {}
        latencies: dict[str, list[float]] = {}
        for kind, ok, latency_ms in kinds_outcomes:
            counts[(kind, bool(ok))] = counts.get((kind, bool(ok)), 0) + 1
            if ok and latency_ms is not None:
                latencies.setdefault(kind, []).append(latency_ms / 1000.0)
        for kind, values in latencies.items():
            self.latency.observe_many(kind, values)
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
