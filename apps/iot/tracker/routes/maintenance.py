"""Maintenance windows of the tenant API. Another tenant's window id answers 404, like a missing one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from iot import repo
from iot.inputs import Id
from iot.maintenance import check_times
from iot.repo import maintenance
from iot.repo.maintenance import WindowSpec
from iot.tracker.auth import AuthenticateFirst, TenantAuth
from iot.tracker.schemas import ErrorOut
from iot.tracker.schemas.maintenance import MaintenanceIn, MaintenanceOut, MaintenancePageOut

router = APIRouter(prefix="/v1", tags=["maintenance"], route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 408, 413, 422)})


def _not_found(window_id: int) -> HTTPException:
    return HTTPException(404, detail=f"no such maintenance window: {window_id}")


def _spec(body: MaintenanceIn) -> WindowSpec:
    times = check_times(body.starts_at, body.ends_at, body.duration_minutes, body.rrule)
    return WindowSpec(body.scope, body.reason, times, body.tag, body.device_id, body.pinned)


@router.post("/maintenance", status_code=201, response_model=MaintenanceOut, summary="Create a maintenance window")
async def create_maintenance(body: MaintenanceIn, tenant: TenantAuth, request: Request) -> MaintenanceOut:
    """A one-off or recurring window. While an occurrence runs, the devices it covers are still checked and
    their states stored, but no incident is opened and no notification sent; a device still failing when
    it ends opens its incident then."""
    window = await maintenance.create_window(request.app.state.pool, tenant.id, _spec(body))
    return MaintenanceOut.model_validate(window)


@router.get("/maintenance", response_model=MaintenancePageOut, summary="List maintenance windows")
async def list_maintenance(
    tenant: TenantAuth,
    request: Request,
    before: Annotated[Id | None, Query(description="Windows older than this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=repo.MAX_PAGE)] = 100,
) -> MaintenancePageOut:
    """Newest first, each with its occurrence in progress or next one (`active`, `next_starts_at`)."""
    items = await maintenance.list_windows(request.app.state.pool, tenant.id, before_id=before, limit=limit)
    return MaintenancePageOut(items=[MaintenanceOut.model_validate(w) for w in items],
                              next_before=items[-1].id if len(items) == limit else None)


@router.get("/maintenance/{window_id}", response_model=MaintenanceOut, responses={404: {"model": ErrorOut}},
            summary="Get a maintenance window")
async def get_maintenance(window_id: Id, tenant: TenantAuth, request: Request) -> MaintenanceOut:
    window = await maintenance.get_window(request.app.state.pool, tenant.id, window_id)
    if window is None:
        raise _not_found(window_id)
    return MaintenanceOut.model_validate(window)


@router.put("/maintenance/{window_id}", response_model=MaintenanceOut, responses={404: {"model": ErrorOut}},
            summary="Replace a maintenance window")
async def replace_maintenance(window_id: Id, body: MaintenanceIn, tenant: TenantAuth,
                              request: Request) -> MaintenanceOut:
    """Send the whole window (as for create); the worker picks the change up within seconds."""
    window = await maintenance.update_window(request.app.state.pool, tenant.id, window_id, _spec(body))
    if window is None:
        raise _not_found(window_id)
    return MaintenanceOut.model_validate(window)


@router.delete("/maintenance/{window_id}", status_code=204, responses={404: {"model": ErrorOut}},
               summary="Delete a maintenance window")
async def delete_maintenance(window_id: Id, tenant: TenantAuth, request: Request) -> Response:
    """Ends it at once: devices still failing open their incidents."""
    if not await maintenance.delete_window(request.app.state.pool, tenant.id, window_id):
        raise _not_found(window_id)
    return Response(status_code=204)
