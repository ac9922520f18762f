"""Fleet pages: download the filtered device list as CSV, bulk actions on it, the parent picker's search."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from iot.dashboard.context import Form, Tenant
from iot.dashboard.forms import split_tags
from iot.dashboard.parents import parent_choices
from iot.dashboard.routes.devices import BULK_ACTIONS, ListParams, refused, render_list
from iot.errors import InputError
from iot.inputs import ascii_int, id_problem
from iot.repo import device_bulk, device_export, devices

router = APIRouter()


@router.get("/devices.csv")
async def export_csv(request: Request, ctx: Tenant) -> Response:
    """The devices the list shows with the same filters and sort, every page of them."""
    query = ListParams.from_request(request).device_query()  # already normalised: unknown values dropped
    return StreamingResponse(device_export.csv_chunks(ctx.db, ctx.tenant.id, query), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{ctx.tenant.slug}-devices.csv"'})


def _checked_ids(values: list[object]) -> list[int]:
    ids = []
    for value in values:
        try:
            number = int(str(value))
        except ValueError:
            raise InputError("id", f"{str(value)[:30]!r} is not a device id; reload the list") from None
        if id_problem(number):
            raise InputError("id", f"{number} is not a device id; reload the list")
        ids.append(number)
    return ids


@router.post("/devices/bulk")
async def bulk(request: Request, ctx: Tenant, form: Form) -> Response:
    """Apply the bulk form's action to the checked devices, or to all devices matching the list's filters.

    Delete asks once more (a page that repeats the form with `confirm`)."""
    raw = await request.form()  # the same parsed form as `form`, with its repeated fields (id, tag)
    params = ListParams.from_values(raw)
    action = str(form.get("action", ""))
    scope = "matching" if form.get("scope") == "matching" else "checked"
    try:
        ids = None if scope == "matching" else _checked_ids(raw.getlist("id"))
        if ids == []:
            raise InputError("id", "no device is checked; tick devices in the list, or choose “all matching”")
        if action not in BULK_ACTIONS:
            raise InputError("action", "choose what to do with the devices")
        interval_text = str(form.get("interval_s") or "").strip()
        interval_s = None
        if action == "set_interval":
            interval_s = ascii_int(interval_text)
            if interval_s is None:
                raise InputError("interval_s", "give the new interval in seconds (5 to 86400)")
        tags = split_tags(str(form.get("tags") or "")) if action in ("tag_add", "tag_remove") else None
        if action == "delete" and form.get("confirm") != "yes":
            total = await device_bulk.count_selected(ctx.db, ctx.tenant.id, params.device_query(), ids)
            if not total:
                raise InputError("id" if ids else "filter", "no device matches any more; nothing to delete")
            return ctx.render(request, "bulk_confirm.html", page="devices", count=total,
                              fields=[(k, v) for k, v in raw.multi_items() if isinstance(v, str) and k != "csrf"])
        result = await device_bulk.bulk_action(ctx.db, ctx.tenant.id, params.device_query(), action, ids=ids,
                                               tags=tags, interval_s=interval_s, quotas=ctx.services.settings.quotas())
    except InputError as exc:
        page = await render_list(request, ctx, params, status_code=422, bulk_done=None,
                                 bulk_error=f"{exc.field}: {exc.reason}")
        return refused(exc, page)
    if result.changed:
        await devices.notify_devices_changed(ctx.services.redis)
    done = params.query_string(page=None, bulk=action, matched=result.matched, changed=result.changed)
    return RedirectResponse(f"/devices?{done}", status_code=303)


@router.get("/fragments/parents")
async def parent_options(request: Request, ctx: Tenant) -> Response:
    """The parent picker's choices for what was typed (htmx swaps them in under the search box)."""
    qp = request.query_params
    choices = await parent_choices(ctx.db, ctx.tenant.id, qp.get("parent_q"), qp.get("parent_id"), qp.get("exclude"))
    return ctx.render(request, "_parent_options.html", choices=choices)
