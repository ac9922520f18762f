"""Bodies of the history endpoints (issue 14): uptime with daily buckets, latency series, SLA target."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from iot.tracker.schemas import Strict

HistoryRange = Literal["24h", "7d", "30d", "90d"]


class UptimeFigures(BaseModel):
    start: datetime
    end: datetime
    uptime_percent: float | None = Field(
        description="Available (up or degraded) share of the observed time, maintenance and no-data time "
        "excluded; null when nothing was observed.")
    up_seconds: float = Field(description="Seconds up or degraded.")
    degraded_seconds: float = Field(description="Of up_seconds, the seconds degraded (slow).")
    downtime_seconds: float
    excluded_seconds: float = Field(description="Seconds in maintenance, left out of the percentage.")
    no_data_seconds: float = Field(description="Seconds in state unknown (not checked yet, paused).")


class UptimeOut(UptimeFigures):
    device_id: int
    range: HistoryRange
    sla_target: float | None = Field(description="The device's SLA target in percent, null if none is set.")
    sla_breach: bool | None = Field(description="True when uptime_percent is under sla_target; null without "
                                    "a target or without data.")
    days: list[UptimeFigures] = Field(description="One bucket per UTC day of the range, oldest first; the last "
                                      "one ends now (90 of them for 90d: the daily uptime bars).")


class LatencyPointOut(BaseModel):
    start: datetime = Field(description="Bucket start.")
    checks: int
    failures: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None


class RegionSeriesOut(BaseModel):
    region: str
    points: list[LatencyPointOut]


class LatencyOut(BaseModel):
    device_id: int
    range: HistoryRange
    source: Literal["minute", "hourly"] = Field(description="Rollups read: minute ones for 24h, hourly beyond.")
    bucket_seconds: int
    regions: list[RegionSeriesOut]


class SlaIn(Strict):
    sla_target: float | None = Field(description="Target uptime in percent (0 < target <= 100, at most 3 "
                                     "decimals), e.g. 99.9; null clears it.", examples=[99.9])


class SlaOut(BaseModel):
    device_id: int
    sla_target: float | None
