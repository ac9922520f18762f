"""Fleet endpoints of the tenant API: the filtered device list as CSV, and bulk actions on a selection."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from iot.errors import InputError
from iot.repo import device_bulk, device_export, devices
from iot.repo.device_list import DeviceQuery, check_filters
from iot.tracker.auth import AuthenticateFirst, TenantAuth
from iot.tracker.filters import DeviceFilters
from iot.tracker.schemas import ErrorOut
from iot.tracker.schemas.fleet import BulkIn, BulkOut

router = APIRouter(prefix="/v1", tags=["devices"], route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 408, 413, 422)})

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


@router.get("/devices.csv", response_class=StreamingResponse, summary="Export devices as CSV",
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "A header line, then one device per line."}})
async def export_devices_csv(
    tenant: TenantAuth,
    request: Request,
    query: DeviceFilters,
    sort: Literal["id", "name", "state", "latency"] = "id",
    order: Literal["asc", "desc"] = "asc",
) -> StreamingResponse:
    """Every device matching the filters of GET /v1/devices, streamed as CSV with the columns the dashboard's
    CSV import reads (name, kind, target, interval_s, timeout_ms, grace_s, enabled, tags `;`-separated).
    Cells starting with = + - @ are prefixed with `'` so spreadsheets do not run them; the import removes it."""
    query = replace(query, sort=sort, descending=order == "desc")
    check_filters(query)  # a bad filter is a 422 before the first byte, not a broken download
    return StreamingResponse(device_export.csv_chunks(request.app.state.pool, tenant.id, query),
                             media_type=CSV_MEDIA_TYPE,
                             headers={"Content-Disposition": f'attachment; filename="{tenant.slug}-devices.csv"'})


@router.post("/devices/bulk", response_model=BulkOut, summary="Act on many devices at once",
             responses={429: {"model": ErrorOut}})
async def bulk_devices(body: BulkIn, tenant: TenantAuth, request: Request) -> BulkOut:
    """Pause, resume, tag, untag, set the interval of, or delete every device matching `filter` (and `ids`).

    At most 10,000 devices per call, in one transaction: all change or none. Answers how many matched and
    how many changed. An empty filter without ids acts on the whole fleet only with `"all": true`."""
    terms = body.filter.model_dump(exclude_none=True)
    if not terms and body.ids is None and not body.all:
        raise InputError("filter", "selects every device; give a filter or ids, or send \"all\": true to mean it")
    if body.action not in ("tag_add", "tag_remove") and body.tags is not None:
        raise InputError("tags", f"only tag_add and tag_remove take tags, not {body.action}")
    if body.action != "set_interval" and body.interval_s is not None:
        raise InputError("interval_s", f"only set_interval takes interval_s, not {body.action}")
    f = body.filter
    query = DeviceQuery(state=f.state, kind=f.kind, region=f.region, region_state=f.region_state, text=f.q,
                        name=f.name, parent_id=f.parent_id, tags=f.tag)
    state = request.app.state
    result = await device_bulk.bulk_action(state.pool, tenant.id, query, body.action, ids=body.ids, tags=body.tags,
                                           interval_s=body.interval_s, quotas=state.settings.quotas())
    if result.changed:
        await devices.notify_devices_changed(state.redis)
    return BulkOut(action=result.action, matched=result.matched, changed=result.changed)  # type: ignore[arg-type]
