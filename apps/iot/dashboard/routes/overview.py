"""Fleet overview: counts by state, monitor health per region, recent incidents (live fragment)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from iot.dashboard import queries
from iot.dashboard.context import Tenant, TenantRequest
from iot.repo import devices, incidents

router = APIRouter()


async def overview_values(ctx: TenantRequest) -> dict[str, object]:
    counts = await devices.state_counts(ctx.db, ctx.tenant.id)
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "regions": await queries.region_health(ctx.db, ctx.services.redis),
        "incidents": await incidents.list_incidents(ctx.db, ctx.tenant.id, limit=10),
    }


@router.get("/")
async def overview(request: Request, ctx: Tenant) -> Response:
    return ctx.render(request, "overview.html", page="overview", **await overview_values(ctx))


@router.get("/fragments/overview")
async def overview_fragment(request: Request, ctx: Tenant) -> Response:
    return ctx.render(request, "_overview_live.html", **await overview_values(ctx))
