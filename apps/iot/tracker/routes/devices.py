"""Device endpoints of the tenant API (and tags, regions). Another tenant's device id answers 404, like a missing one."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response

from iot import repo
from iot.errors import InputError
from iot.inputs import CursorText, Id, Offset
from iot.repo import device_list, devices, regions, tags
from iot.repo.devices import DeviceSpec
from iot.tracker.auth import AuthenticateFirst, TenantAuth
from iot.tracker.filters import DeviceFilters
from iot.tracker.schemas import (
    DeviceCreateBody,
    DeviceCreated,
    DeviceDetailOut,
    DeviceIn,
    DeviceOut,
    DevicePageOut,
    DevicePatch,
    DevicesCreated,
    ErrorOut,
    RegionOut,
    RegionStateOut,
    TagOut,
    TokenOut,
)

router = APIRouter(prefix="/v1", tags=["devices"], route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 408, 413, 422)})

NOT_FOUND = "no such device"


def _not_found(device_id: int) -> HTTPException:
    return HTTPException(404, detail=f"{NOT_FOUND}: {device_id}")


def _spec(item: DeviceIn) -> DeviceSpec:
    return DeviceSpec(**item.model_dump())


@router.post("/devices", status_code=201, response_model=DeviceCreated | DevicesCreated,
             responses={409: {"model": ErrorOut}, 429: {"model": ErrorOut}})
async def create_devices(
    body: Annotated[DeviceCreateBody, Body(description="One device, a list, or {\"devices\": [...]}.")],
    tenant: TenantAuth,
    request: Request,
) -> DeviceCreated | DevicesCreated:
    """Create one device or many at once (all or nothing). Each device's ingest token is shown only here."""
    state = request.app.state
    if isinstance(body, DeviceIn):
        (created,) = await devices.create_devices(state.pool, tenant.id, [_spec(body)], field_prefix=None,
                                                  egress=state.egress, quotas=state.settings.quotas(),
                                                  box=state.settings.secret_box())
        await devices.notify_devices_changed(state.redis)
        return DeviceCreated(id=created.id, name=created.name, token=created.token)
    items = body if isinstance(body, list) else body.devices
    limit = state.settings.max_devices_per_request
    if len(items) > limit:
        raise HTTPException(413, detail=f"devices: {len(items)} items, at most {limit} per request; split the list")
    if not items:
        raise InputError("devices", "the list is empty; send at least one device")
    created_all = await devices.create_devices(state.pool, tenant.id, [_spec(i) for i in items], egress=state.egress,
                                               quotas=state.settings.quotas(), box=state.settings.secret_box())
    await devices.notify_devices_changed(state.redis)
    return DevicesCreated(devices=[DeviceCreated(id=c.id, name=c.name, token=c.token) for c in created_all])


@router.get("/devices", response_model=DevicePageOut)
async def list_devices(
    tenant: TenantAuth,
    request: Request,
    query: DeviceFilters,
    sort: Literal["id", "name", "state", "latency"] = "id",
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=repo.MAX_PAGE)] = 100,
    offset: Annotated[Offset, Query()] = 0,
    cursor: Annotated[CursorText | None, Query(description="next_cursor of the previous page.")] = None,
) -> DevicePageOut:
    """Page through devices; follow `next_cursor` (stable under inserts) or use `offset`."""
    query = replace(query, sort=sort, descending=order == "desc", limit=limit, offset=offset, cursor=cursor)
    page = await device_list.list_devices(request.app.state.pool, tenant.id, query)
    return DevicePageOut(items=[DeviceOut.model_validate(d) for d in page.items], total=page.total,
                         next_cursor=page.next_cursor)


@router.get("/devices/{device_id}", response_model=DeviceDetailOut, responses={404: {"model": ErrorOut}})
async def get_device(device_id: Id, tenant: TenantAuth, request: Request) -> DeviceDetailOut:
    """The device with its overall state and the last result and latency from each region."""
    detail = await devices.get_device(request.app.state.pool, tenant.id, device_id)
    if detail is None:
        raise _not_found(device_id)
    out = DeviceOut.model_validate(detail.device).model_dump()
    return DeviceDetailOut(**out, regions=[RegionStateOut.model_validate(r) for r in detail.regions])


@router.patch("/devices/{device_id}", response_model=DeviceOut,
              responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 429: {"model": ErrorOut}})
async def update_device(device_id: Id, body: DevicePatch, tenant: TenantAuth, request: Request) -> DeviceOut:
    """Change some fields; send `null` to clear an optional one (target, grace_s, parent_id, anomaly_*)."""
    changes = body.model_dump(exclude_unset=True)
    for required in ("name", "kind", "interval_s", "timeout_ms", "enabled", "tags"):
        if required in changes and changes[required] is None:
            raise InputError(required, "cannot be null")
    if not changes:
        raise InputError("body", "no field to change; send at least one")
    state = request.app.state
    device = await devices.update_device(state.pool, tenant.id, device_id, changes, egress=state.egress,
                                         quotas=state.settings.quotas(), box=state.settings.secret_box())
    if device is None:
        raise _not_found(device_id)
    await devices.notify_devices_changed(state.redis)
    return DeviceOut.model_validate(device)


@router.delete("/devices/{device_id}", status_code=204, responses={404: {"model": ErrorOut}})
async def delete_device(device_id: Id, tenant: TenantAuth, request: Request) -> Response:
    state = request.app.state
    if not await devices.delete_device(state.pool, tenant.id, device_id):
        raise _not_found(device_id)
    await devices.notify_devices_changed(state.redis)
    return Response(status_code=204)


@router.post("/devices/{device_id}/token", response_model=TokenOut, responses={404: {"model": ErrorOut}})
async def rotate_device_token(device_id: Id, tenant: TenantAuth, request: Request) -> TokenOut:
    """Issue a new ingest token for the device; the old one stops working within seconds."""
    token = await devices.rotate_device_token(request.app.state.pool, tenant.id, device_id)
    if token is None:
        raise _not_found(device_id)
    return TokenOut(token=token)


@router.get("/tags", response_model=list[TagOut])
async def list_tags(
    tenant: TenantAuth,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=tags.MAX_TAG_COUNTS, description="At most this many tags.")] = 200,
) -> list[TagOut]:
    """The tenant's device tags with how many devices carry each, the most used first."""
    return [TagOut.model_validate(t) for t in await tags.tag_counts(request.app.state.pool, tenant.id, limit)]


@router.get("/regions", response_model=list[RegionOut], tags=["regions"])
async def list_regions(tenant: TenantAuth, request: Request) -> list[RegionOut]:
    """The monitor regions and their health."""
    return [RegionOut.model_validate(r) for r in await regions.list_regions(request.app.state.pool,
                                                                          request.app.state.redis)]
