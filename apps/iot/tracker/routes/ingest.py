"""Device ingest: metrics and heartbeats, authenticated by the device's own token, or by a tenant API key
with the `ingest` scope naming one of its tenant's devices in `X-Device-Id` (`iot.tracker.auth.current_device`).
Both arrive here as the same `IngestDevice`: one code path, the same limits and quotas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request

from iot.errors import InputError
from iot.repo.devices import IngestDevice
from iot.tracker.auth import AuthenticateFirst, DeviceAuth
from iot.tracker.ingest import IngestUnavailable
from iot.tracker.schemas import ErrorOut, IngestOut, MetricPoint, MetricsBody

router = APIRouter(prefix="/v1", tags=["ingest"], route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 403, 404, 408, 413, 422, 429, 503)})

# Points stamped further ahead than this come from a device with a wrong clock.
MAX_CLOCK_SKEW = timedelta(minutes=5)


@router.post("/metrics", response_model=IngestOut)
async def ingest_metrics(
    body: Annotated[MetricsBody, Body(description="One point, a list, or {\"points\": [...]}.")],
    device: DeviceAuth,
    request: Request,
) -> IngestOut:
    """Store metric points (also counts as a heartbeat). Answers once the points are in the database.

    Authenticate with the device's token, or with a tenant API key that has the `ingest` scope plus
    `X-Device-Id: <device id>` naming one of the tenant's devices (a gateway relaying for many devices).

    Refused: points stamped more than 5 minutes ahead or older than METRIC_MAX_AGE_SECONDS (422), a
    disabled device (403), an API key without the `ingest` scope (403), a device id that is not the key's
    tenant's (404), more points per second than the tenant's quota (429 with Retry-After)."""
    points: list[MetricPoint] = body if isinstance(body, list) else body.get("points", [body])  # type: ignore[assignment]
    state = request.app.state
    limit = state.settings.max_points_per_request
    if len(points) > limit:
        raise HTTPException(413, detail=f"points: {len(points)} points, at most {limit} per request; split the batch")
    now = datetime.now(UTC)
    max_age = timedelta(seconds=state.settings.metric_max_age_seconds)
    rows = []
    for i, p in enumerate(points):
        ts = p.get("ts") or now
        if ts.tzinfo is None:
            raise InputError(f"points[{i}].ts", "needs a timezone, e.g. 2026-01-01T12:00:00Z")
        if ts - now > MAX_CLOCK_SKEW:
            raise InputError(f"points[{i}].ts", "more than 5 minutes in the future; check the device clock")
        if now - ts > max_age:
            raise InputError(f"points[{i}].ts", f"older than {_age(max_age)}; such points are not accepted "
                                                "(check the device clock)")
        rows.append((ts, p["name"], p["value"]))
    return IngestOut(stored=await _write(request, device, rows, now))


@router.post("/heartbeat", response_model=IngestOut)
async def heartbeat(device: DeviceAuth, request: Request) -> IngestOut:
    """Tell the tracker the device is alive (push devices go `down` when silent past their grace time).

    Same authentication as `POST /v1/metrics`: the device's token, or an `ingest` API key with `X-Device-Id`."""
    return IngestOut(stored=await _write(request, device, [], datetime.now(UTC)))


def _age(delta: timedelta) -> str:
    return f"{delta.days} days" if delta.days >= 2 else f"{int(delta.total_seconds())} s"


async def _write(request: Request, device: IngestDevice, rows: list, now: datetime) -> int:
    state = request.app.state
    rate = device.points_per_second
    # A heartbeat costs a write too: it counts as one point.
    await state.point_budget.take(device.tenant_id, max(len(rows), 1),
                                  state.settings.quota_points_per_second if rate is None else rate)
    try:
        return await state.writer.write(device.id, rows, now)
    except IngestUnavailable as exc:
        raise HTTPException(503, detail=str(exc), headers={"Retry-After": "2"}) from exc
