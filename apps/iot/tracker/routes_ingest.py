"""Device ingest: metrics and heartbeats, authenticated by the device's own token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request

from iot.errors import InputError
from iot.tracker.auth import DeviceAuth
from iot.tracker.ingest import IngestUnavailable
from iot.tracker.schemas import ErrorOut, IngestOut, MetricPoint, MetricsBody

router = APIRouter(prefix="/v1", tags=["ingest"],
                   responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}})

# Points stamped further ahead than this come from a device with a wrong clock.
MAX_CLOCK_SKEW = timedelta(minutes=5)


@router.post("/metrics", response_model=IngestOut, responses={413: {"model": ErrorOut}})
async def ingest_metrics(
    body: Annotated[MetricsBody, Body(description="One point, a list, or {\"points\": [...]}.")],
    device: DeviceAuth,
    request: Request,
) -> IngestOut:
    """Store metric points (also counts as a heartbeat). Answers once the points are in the database."""
    points: list[MetricPoint] = body if isinstance(body, list) else body.get("points", [body])  # type: ignore[assignment]
    state = request.app.state
    limit = state.settings.max_points_per_request
    if len(points) > limit:
        raise HTTPException(413, detail=f"points: {len(points)} points, at most {limit} per request; split the batch")
    now = datetime.now(UTC)
    rows = []
    for i, p in enumerate(points):
        ts = p.get("ts") or now
        if ts.tzinfo is None:
            raise InputError(f"points[{i}].ts", "needs a timezone, e.g. 2026-01-01T12:00:00Z")
        if ts - now > MAX_CLOCK_SKEW:
            raise InputError(f"points[{i}].ts", "more than 5 minutes in the future; check the device clock")
        rows.append((ts, p["name"], p["value"]))
    return IngestOut(stored=await _write(request, device.id, rows, now))


@router.post("/heartbeat", response_model=IngestOut)
async def heartbeat(device: DeviceAuth, request: Request) -> IngestOut:
    """Tell the tracker the device is alive (push devices go `down` when silent past their grace time)."""
    return IngestOut(stored=await _write(request, device.id, [], datetime.now(UTC)))


async def _write(request: Request, device_id: int, rows: list, now: datetime) -> int:
    try:
        return await request.app.state.writer.write(device_id, rows, now)
    except IngestUnavailable as exc:
        raise HTTPException(503, detail=str(exc), headers={"Retry-After": "2"}) from exc
