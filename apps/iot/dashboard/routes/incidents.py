"""Incidents pages: the list with filters, one incident with its timeline, acknowledge and note forms."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from iot.dashboard.context import Form, NotFound, Tenant, TenantRequest
from iot.errors import InputError
from iot.inputs import Id, ascii_int
from iot.repo import incidents

router = APIRouter()

PAGE = 50


def _filter(value: str | None, allowed: tuple[str, ...]) -> str | None:
    return value if value in allowed else None  # an unknown filter value shows everything, like none


def _id(value: str | None) -> int | None:
    """A filter id from the query; the form sends an empty field when none is chosen."""
    text = (value or "").strip()
    value = ascii_int(text)
    return value if value else None


@router.get("/incidents")
async def incidents_page(request: Request, ctx: Tenant, status: str | None = None, kind: str | None = None,
                         device_id: str | None = None, before: str | None = None) -> Response:
    status, kind = _filter(status, incidents.STATUSES), _filter(kind, incidents.KINDS)
    device_id, before = _id(device_id), _id(before)  # type: ignore[assignment]
    items = await incidents.list_incidents(ctx.db, ctx.tenant.id, status=status, kind=kind, device_id=device_id,
                                           before_id=before, limit=PAGE)
    filters = {"status": status or "", "kind": kind or "", "device_id": device_id or ""}
    return ctx.render(request, "incidents.html", page="incidents", incidents=items, filters=filters,
                      statuses=incidents.STATUSES, kinds=incidents.KINDS,
                      next_before=items[-1].id if len(items) == PAGE else None)


async def _incident_page(request: Request, ctx: TenantRequest, incident_id: int, status_code: int = 200,
                         error: str | None = None, form: dict | None = None) -> Response:
    detail = await incidents.get_incident(ctx.db, ctx.tenant.id, incident_id)
    if detail is None:  # also for another tenant's incident: never hint that it exists
        raise NotFound(f"There is no incident {incident_id} in {ctx.tenant.slug}.")
    return ctx.render(request, "incident.html", status_code=status_code, page="incidents", detail=detail,
                      incident=detail.incident, error=error, form=form or {})


@router.get("/incidents/{incident_id}")
async def incident_page(request: Request, ctx: Tenant, incident_id: Id) -> Response:
    return await _incident_page(request, ctx, incident_id)


@router.post("/incidents/{incident_id}/ack")
async def acknowledge(request: Request, ctx: Tenant, form: Form, incident_id: Id) -> Response:
    try:
        found = await incidents.acknowledge(ctx.db, ctx.tenant.id, incident_id, str(form.get("actor") or ""))
    except InputError as exc:
        status = 409 if exc.field == "incident" else 422
        return await _incident_page(request, ctx, incident_id, status, f"{exc.field}: {exc.reason}", form)
    if found is None:
        raise NotFound(f"There is no incident {incident_id} in {ctx.tenant.slug}.")
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/notes")
async def add_note(request: Request, ctx: Tenant, form: Form, incident_id: Id) -> Response:
    try:
        event = await incidents.add_note(ctx.db, ctx.tenant.id, incident_id, str(form.get("actor") or ""),
                                         str(form.get("text") or ""))
    except InputError as exc:
        return await _incident_page(request, ctx, incident_id, 422, f"{exc.field}: {exc.reason}", form)
    if event is None:
        raise NotFound(f"There is no incident {incident_id} in {ctx.tenant.slug}.")
    return RedirectResponse(f"/incidents/{incident_id}#timeline", status_code=303)
