"""Fleet pages: download the filtered device list as CSV, bulk actions on it, the parent picker's search."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from iot.dashboard.context import Tenant
from iot.dashboard.routes.devices import ListParams
from iot.repo import device_export

router = APIRouter()


@router.get("/devices.csv")
async def export_csv(request: Request, ctx: Tenant) -> Response:
    """The devices the list shows with the same filters and sort, every page of them."""
    query = ListParams.from_request(request).device_query()  # already normalised: unknown values dropped
    return StreamingResponse(device_export.csv_chunks(ctx.db, ctx.tenant.id, query), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{ctx.tenant.slug}-devices.csv"'})
