"""Maintenance page: the tenant's windows, a form for one-off and recurring windows, delete."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from iot.dashboard.context import Form, NotFound, Tenant, TenantRequest
from iot.errors import InputError
from iot.inputs import Id, ascii_int
from iot.maintenance import check_times
from iot.repo import maintenance
from iot.repo.maintenance import WindowSpec

router = APIRouter()

# The form's "repeat" choices; "custom" takes the RRULE field as written.
REPEATS = {"": "never (one-off)", "FREQ=DAILY": "every day", "FREQ=WEEKLY": "every week",
           "FREQ=MONTHLY": "every month", "custom": "custom RRULE"}


def _datetime(form: dict, name: str) -> datetime:
    text = str(form.get(name) or "").strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InputError(name, "send a date and time in UTC like 2026-12-07T02:00") from None


def _int(form: dict, name: str) -> int | None:
    text = str(form.get(name) or "").strip()
    if not text:
        return None
    value = ascii_int(text)
    if value is None:
        raise InputError(name, "must be a whole number")
    return value


def spec_from_form(form: dict) -> WindowSpec:
    """The window a submitted form describes (InputError names the form field)."""
    repeat = str(form.get("repeat") or "")
    if repeat not in REPEATS:
        raise InputError("repeat", f"choose one of: {', '.join(REPEATS.values())}")
    rule = str(form.get("rrule") or "").strip() if repeat == "custom" else repeat
    if repeat == "custom" and not rule:
        raise InputError("rrule", "write the rule for a custom repeat, e.g. FREQ=WEEKLY;BYDAY=SU")
    ends = str(form.get("ends_at") or "").strip()
    times = check_times(_datetime(form, "starts_at"), _datetime(form, "ends_at") if ends else None,
                        None if ends else _int(form, "duration_minutes"), rule or None)
    scope = str(form.get("scope") or "tenant")
    return WindowSpec(scope, str(form.get("reason") or ""), times,
                      tag=str(form.get("tag") or "").strip() or None if scope == "tag" else None,
                      device_id=_int(form, "device_id") if scope == "device" else None,
                      pinned=form.get("pinned") == "on")


async def _page(request: Request, ctx: TenantRequest, status_code: int = 200, **values: object) -> Response:
    windows = await maintenance.list_windows(ctx.db, ctx.tenant.id, limit=200)
    windows.sort(key=lambda w: (not w.pinned, not w.active, w.next_starts_at is None,
                                w.next_starts_at or w.starts_at))
    values = {"error": None, "notice": None, "form": {"scope": "tenant", "duration_minutes": "60"}, **values}
    return ctx.render(request, "maintenance.html", status_code=status_code, page="maintenance", windows=windows,
                      repeats=REPEATS, **values)


@router.get("/maintenance")
async def maintenance_page(request: Request, ctx: Tenant) -> Response:
    return await _page(request, ctx)


@router.post("/maintenance")
async def create_window(request: Request, ctx: Tenant, form: Form) -> Response:
    try:
        window = await maintenance.create_window(ctx.db, ctx.tenant.id, spec_from_form(form))
    except InputError as exc:
        return await _page(request, ctx, 422, form=form, error=f"{exc.field}: {exc.reason}")
    return await _page(request, ctx, notice=f"Maintenance window {window.id} saved: while it runs, checks go on "
                                            "but incidents and notifications wait until it ends.")


@router.post("/maintenance/{window_id}/delete")
async def delete_window(ctx: Tenant, form: Form, window_id: Id) -> Response:
    if not await maintenance.delete_window(ctx.db, ctx.tenant.id, window_id):
        raise NotFound(f"There is no maintenance window {window_id} in {ctx.tenant.slug}.")
    return RedirectResponse("/maintenance", status_code=303)
