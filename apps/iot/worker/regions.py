"""Which regions are live (recent monitor heartbeat) and which are healthy enough to vote in quorums.

A region is unhealthy when its monitors' canaries all fail, or when it fails a large share of its checks
while the other regions do not (its own network is broken: the devices are fine). Unhealthy regions
are still sent checks, so their recovery is seen, but they are excluded from every quorum.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from iot import protocol


@dataclass(slots=True)
class RegionStatus:
    name: str
    live: bool
    healthy: bool = True
    reason: str | None = None
    last_heartbeat_at: float | None = None
    failure_rate: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "live": self.live, "healthy": self.healthy, "reason": self.reason,
            "last_heartbeat_at": self.last_heartbeat_at, "failure_rate": self.failure_rate,
        }


async def live_regions(client: aioredis.Redis, alive_seconds: float) -> dict[str, float]:
    """region -> newest heartbeat time, for regions with a heartbeat in the last `alive_seconds`."""
    now = time.time()
    members = await client.zrangebyscore(protocol.MONITOR_HEARTBEATS_KEY, now - alive_seconds, "+inf",
                                         withscores=True)
    newest: dict[str, float] = {}
    for member, score in members:
        region = protocol.region_of_member(member.decode() if isinstance(member, bytes) else member)
        newest[region] = max(newest.get(region, 0.0), float(score))
    return newest


async def canary_failures(client: aioredis.Redis, max_age_seconds: float) -> dict[str, list[str]]:
    """region -> failed canary targets, for regions where every recent canary report failed."""
    now = time.time()
    reports: dict[str, list[dict[str, object]]] = {}
    for member, raw in (await client.hgetall(protocol.MONITOR_CANARIES_KEY)).items():
        report = json.loads(raw)
        if now - float(report.get("at", 0)) > max_age_seconds:
            continue
        name = member.decode() if isinstance(member, bytes) else member
        reports.setdefault(protocol.region_of_member(name), []).append(report)
    return {
        region: sorted({str(t) for r in rs for t in r.get("failed", [])})  # type: ignore[union-attr]
        for region, rs in reports.items()
        if rs and all(not r.get("ok", True) for r in rs)
    }


@dataclass(slots=True)
class FailureRates:
    """Check and failure counts per region over its most recent results, fed by the evaluator.

    A region's figure covers its newest results only: the latest messages adding up to `sample_checks`
    checks, and none older than `window_seconds`. With a busy region that is the last second or two, so a
    cut region crosses the failure threshold (and a healed one falls back under it) within a check
    interval instead of after half a long window; a quiet region falls back to the time window.
    """

    window_seconds: float
    sample_checks: int = 60
    _events: dict[str, deque[tuple[float, int, int]]] = field(default_factory=dict)

    def add(self, region: str, checks: int, failures: int, now: float | None = None) -> None:
        if checks:
            self._events.setdefault(region, deque()).append((now or time.monotonic(), checks, failures))

    def totals(self, now: float | None = None) -> dict[str, tuple[int, int]]:
        now = now or time.monotonic()
        out: dict[str, tuple[int, int]] = {}
        for region, events in self._events.items():
            while events and events[0][0] < now - self.window_seconds:
                events.popleft()
            checks = failures = 0
            for index in range(len(events) - 1, -1, -1):  # newest first
                _at, n, f = events[index]
                checks, failures = checks + n, failures + f
                if checks >= self.sample_checks:
                    for _ in range(index):  # older events can never be in a sample again
                        events.popleft()
                    break
            out[region] = (checks, failures)
        return out


def judge_regions(
    live: dict[str, float],
    canaries_failed: dict[str, list[str]],
    totals: dict[str, tuple[int, int]],
    *,
    rate_threshold: float,
    min_checks: int,
) -> dict[str, RegionStatus]:
    """Health of every live region from canaries and failure rates (pure, for tests)."""
    statuses: dict[str, RegionStatus] = {}
    for region, beat in live.items():
        status = RegionStatus(region, live=True, last_heartbeat_at=beat)
        checks, failures = totals.get(region, (0, 0))
        if checks:
            status.failure_rate = round(failures / checks, 3)
        if region in canaries_failed:
            status.healthy = False
            status.reason = "canaries failing: " + ", ".join(canaries_failed[region])
        elif checks >= min_checks and status.failure_rate is not None and status.failure_rate >= rate_threshold:
            other_checks = sum(c for r, (c, _) in totals.items() if r != region and r in live)
            other_failures = sum(f for r, (_, f) in totals.items() if r != region and r in live)
            if other_checks >= min_checks:
                other_rate = other_failures / other_checks
                if other_rate < status.failure_rate / 2:
                    status.healthy = False
                    status.reason = (
                        f"fails {status.failure_rate:.0%} of its checks while the other regions fail "
                        f"{other_rate:.0%}: the region's network, not the devices"
                    )
        statuses[region] = status
    return statuses
