"""Incident endpoints of the tenant API: list and filter, one with its timeline, acknowledge, notes.
Another tenant's incident id answers 404, like a missing one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from iot import repo
from iot.errors import InputError
from iot.inputs import Id
from iot.repo import incidents
from iot.tracker.auth import AuthenticateFirst, TenantAuth
from iot.tracker.schemas import ErrorOut, IncidentOut, IncidentPageOut
from iot.tracker.schemas.incidents import AckIn, IncidentDetailOut, NoteIn, TimelineEventOut

router = APIRouter(prefix="/v1", tags=["incidents"], route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 408, 413, 422)})


def _not_found(incident_id: int) -> HTTPException:
    return HTTPException(404, detail=f"no such incident: {incident_id}")


def _detail(detail: incidents.IncidentDetail) -> IncidentDetailOut:
    return IncidentDetailOut(**IncidentOut.model_validate(detail.incident).model_dump(),
                             timeline=[TimelineEventOut.model_validate(e) for e in detail.timeline],
                             suppressed_children=detail.suppressed_children)  # type: ignore[arg-type]


@router.get("/incidents", response_model=IncidentPageOut, summary="List incidents")
async def list_incidents(
    tenant: TenantAuth,
    request: Request,
    device_id: Annotated[Id | None, Query(description="Only this device's incidents.")] = None,
    open: Annotated[bool, Query(description="Only unresolved incidents (same as status=open).")] = False,  # noqa: A002
    status: Annotated[Literal["open", "resolved"] | None, Query(description="open or resolved.")] = None,
    kind: Annotated[Literal["down", "degraded", "silent"] | None, Query(description="Only this kind.")] = None,
    before: Annotated[Id | None, Query(description="Incidents older than this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=repo.MAX_PAGE)] = 50,
) -> IncidentPageOut:
    """Incidents newest first; a foreign or unknown device_id simply has none."""
    if open and status == "resolved":
        raise InputError("status", "open=true contradicts status=resolved; send one of them")
    items = await incidents.list_incidents(request.app.state.pool, tenant.id, device_id=device_id,
                                           open_only=open, status=status, kind=kind, before_id=before, limit=limit)
    return IncidentPageOut(items=[IncidentOut.model_validate(i) for i in items],
                           next_before=items[-1].id if len(items) == limit else None)


@router.get("/incidents/{incident_id}", response_model=IncidentDetailOut, responses={404: {"model": ErrorOut}},
            summary="Get an incident with its timeline")
async def get_incident(incident_id: Id, tenant: TenantAuth, request: Request) -> IncidentDetailOut:
    """The incident, its timeline (opened, each notification sent and its result, acknowledged, notes,
    suppressed, resolved; oldest first) and, while open, the children whose alerts it holds back."""
    detail = await incidents.get_incident(request.app.state.pool, tenant.id, incident_id)
    if detail is None:
        raise _not_found(incident_id)
    return _detail(detail)


@router.post("/incidents/{incident_id}/ack", response_model=IncidentDetailOut,
             responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}}, summary="Acknowledge an incident")
async def acknowledge_incident(incident_id: Id, body: AckIn, tenant: TenantAuth, request: Request
                               ) -> IncidentDetailOut:
    """Say someone is on it: once per open incident (409 when already acknowledged or resolved)."""
    detail = await incidents.acknowledge(request.app.state.pool, tenant.id, incident_id, body.actor)
    if detail is None:
        raise _not_found(incident_id)
    return _detail(detail)


@router.post("/incidents/{incident_id}/notes", status_code=201, response_model=TimelineEventOut,
             responses={404: {"model": ErrorOut}}, summary="Add a note to an incident")
async def add_incident_note(incident_id: Id, body: NoteIn, tenant: TenantAuth, request: Request
                            ) -> TimelineEventOut:
    """A note on the incident's timeline, open or resolved."""
    event = await incidents.add_note(request.app.state.pool, tenant.id, incident_id, body.actor, body.text)
    if event is None:
        raise _not_found(incident_id)
    return TimelineEventOut.model_validate(event)
