"""Fleet endpoints of the tenant API: the filtered device list as CSV, and bulk actions on a selection."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from iot.repo import device_export
from iot.repo.device_list import check_filters
from iot.tracker.auth import AuthenticateFirst, TenantAuth
from iot.tracker.filters import DeviceFilters
from iot.tracker.schemas import ErrorOut

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
