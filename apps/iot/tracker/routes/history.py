"""Uptime, latency history and SLA target of one device (issue 14). Another tenant's device answers 404."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from iot.inputs import Id
from iot.repo import history, maintenance
from iot.tracker.auth import AuthenticateFirst, TenantAuth
from iot.tracker.schemas import ErrorOut
from iot.tracker.schemas.history import (
    HistoryRange,
    LatencyOut,
    LatencyPointOut,
    RegionSeriesOut,
    SlaIn,
    SlaOut,
    UptimeFigures,
    UptimeOut,
)
from iot.uptime import Uptime

router = APIRouter(prefix="/v1", tags=["history"], route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 404, 408, 413, 422)})

RangeQuery = Annotated[HistoryRange, Query(description="24h, 7d, 30d or 90d (ending now).")]


def _not_found(device_id: int) -> HTTPException:
    return HTTPException(404, detail=f"no such device: {device_id}")


def _figures(u: Uptime) -> dict[str, object]:
    return {"start": u.start, "end": u.end, "uptime_percent": u.percent, "up_seconds": u.up_seconds,
            "degraded_seconds": u.degraded_seconds, "downtime_seconds": u.down_seconds,
            "excluded_seconds": u.excluded_seconds, "no_data_seconds": u.no_data_seconds}


@router.get("/devices/{device_id}/uptime", response_model=UptimeOut, summary="Uptime of a device")
async def device_uptime(device_id: Id, tenant: TenantAuth, request: Request, range: RangeQuery = "24h") -> UptimeOut:
    """Uptime % over the range from the device's state timeline (exact to the second), downtime, time in
    maintenance (excluded), the SLA target with a breach flag, and one bucket per UTC day."""
    pool, now = request.app.state.pool, datetime.now(UTC)
    excluded = await maintenance.device_intervals(pool, tenant.id, device_id, now - history.LOOKBACK, now)
    report = await history.uptime_report(pool, tenant.id, device_id, range, now=now, excluded=excluded)
    if report is None:
        raise _not_found(device_id)
    return UptimeOut(**_figures(report.total), device_id=device_id, range=range,
                     sla_target=report.device.sla_target, sla_breach=report.breach,
                     days=[UptimeFigures(**_figures(d)) for d in report.days])  # type: ignore[arg-type]


@router.get("/devices/{device_id}/latency", response_model=LatencyOut, summary="Response-time series of a device")
async def device_latency(device_id: Id, tenant: TenantAuth, request: Request, range: RangeQuery = "24h") -> LatencyOut:
    """Latency per region in buckets: 10 minutes over 24h (minute rollups), 1 hour over 7d, 6 hours over 30d,
    1 day over 90d (hourly rollups, kept RETENTION_HOURLY_DAYS)."""
    found = await history.latency_series(request.app.state.pool, tenant.id, device_id, range)
    if found is None:
        raise _not_found(device_id)
    _, span, points = found
    regions: dict[str, list[LatencyPointOut]] = {}
    for p in points:
        regions.setdefault(p.region, []).append(LatencyPointOut(
            start=p.start, checks=p.checks, failures=p.failures, latency_p50_ms=p.latency_p50,
            latency_p95_ms=p.latency_p95, latency_max_ms=p.latency_max))
    return LatencyOut(device_id=device_id, range=range, source=span.source,
                      bucket_seconds=int(span.bucket.total_seconds()),
                      regions=[RegionSeriesOut(region=r, points=ps) for r, ps in regions.items()])


@router.put("/devices/{device_id}/sla", response_model=SlaOut, summary="Set a device's SLA target")
async def set_sla(device_id: Id, body: SlaIn, tenant: TenantAuth, request: Request) -> SlaOut:
    """Set the uptime target (percent) the uptime endpoint and the dashboard compare against; null clears it."""
    if not await history.set_sla_target(request.app.state.pool, tenant.id, device_id, body.sla_target):
        raise _not_found(device_id)
    return SlaOut(device_id=device_id, sla_target=body.sla_target)
