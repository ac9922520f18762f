"""Device list (server-side paging, filters, sort), detail with charts, add (one or CSV), edit, delete."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from iot.dashboard import csv_import, queries
from iot.dashboard.charts import WINDOWS, build_chart
from iot.dashboard.context import Form, NotFound, Tenant, TenantRequest
from iot.dashboard.forms import device_changes, new_device_spec
from iot.dashboard.routes.metrics import WINDOW_LABELS, metric_charts
from iot.errors import InputError, QuotaExceeded
from iot.inputs import DNS_LABEL, INT8_MAX, MAX_NAME, MAX_SEARCH, MAX_TAGS, Id, normalise_tag, text_problem
from iot.repo import devices, incidents, metric_rules, metrics, tags
from iot.repo.device_list import DeviceQuery, list_devices

# The list page shows the tenant's most used tags as filter links (all of them can be thousands).
DASHBOARD_TAGS = 50

router = APIRouter()

PAGE_SIZE = 50
MAX_METRIC_COLUMNS = 5
LIST_SORTS = ("name", "state", "latency")
MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_PAGE_NUMBER = INT8_MAX // PAGE_SIZE  # keeps the offset inside bigint


@dataclass(frozen=True, slots=True)
class ListParams:
    """The list page's query string, normalised (unknown values fall back to defaults)."""

    q: str = ""
    state: str = ""
    region: str = ""
    sort: str = "name"
    dir: str = "asc"
    page: int = 1
    tags: tuple[str, ...] = ()  # devices having all of these
    metrics: tuple[str, ...] = ()  # latest value columns, e.g. ?metrics=temperature,battery

    @classmethod
    def from_request(cls, request: Request) -> ListParams:
        qp = request.query_params
        try:
            page = min(max(1, int(qp.get("page", "1"))), MAX_PAGE_NUMBER)
        except ValueError:
            page = 1
        state = qp.get("state", "")
        sort = qp.get("sort", "name")
        q = qp.get("q", "").strip()[:MAX_SEARCH]
        region = qp.get("region", "").strip()
        valid_tags = (normalise_tag(t) for t in qp.getlist("tag")[:MAX_TAGS])
        return cls(
            tags=tuple(dict.fromkeys(tag for tag, problem in valid_tags if problem is None)),
            metrics=metric_columns(qp.get("metrics", "")),
            q=q if text_problem(q, MAX_SEARCH) is None else "",
            state=state if state in devices.STATES else "",
            region=region if DNS_LABEL.fullmatch(region) else "",
            sort=sort if sort in LIST_SORTS else "name",
            dir="desc" if qp.get("dir") == "desc" else "asc",
            page=page,
        )

    def query_string(self, **override: object) -> str:
        values = {"tag": list(self.tags), "metrics": ",".join(self.metrics), "q": self.q, "state": self.state, "region": self.region,
                  "sort": self.sort, "dir": self.dir, "page": self.page, **override}
        return urlencode({k: v for k, v in values.items() if v not in ("", None, [])}, doseq=True)

    def device_query(self) -> DeviceQuery:
        # With a region chosen, the state filter asks for that region's view of the device.
        return DeviceQuery(
            state=self.state or None if not self.region else None,
            region=self.region or None,
            region_state=self.state or None if self.region else None,
            text=self.q or None,
            tags=list(self.tags) or None,
            sort=self.sort,  # type: ignore[arg-type]
            descending=self.dir == "desc",
            limit=PAGE_SIZE,
            offset=(self.page - 1) * PAGE_SIZE,
        )


def metric_columns(raw: str) -> tuple[str, ...]:
    """`temperature, battery` -> the first MAX_METRIC_COLUMNS valid metric names (others are ignored)."""
    names = (n.strip() for n in raw[:MAX_SEARCH].split(","))
    valid = (n for n in names if n and text_problem(n, MAX_NAME) is None)
    return tuple(dict.fromkeys(valid))[:MAX_METRIC_COLUMNS]


async def list_values(ctx: TenantRequest, params: ListParams) -> dict[str, object]:
    result = await list_devices(ctx.db, ctx.tenant.id, params.device_query())
    pages = max(1, math.ceil(result.total / PAGE_SIZE))
    latest = await metrics.latest_for(ctx.db, ctx.tenant.id, [d.id for d in result.items], list(params.metrics))
    return {"params": params, "devices": result.items, "total": result.total, "pages": pages, "latest": latest}


@router.get("/devices")
async def device_list(request: Request, ctx: Tenant) -> Response:
    params = ListParams.from_request(request)
    return ctx.render(request, "devices.html", page="devices", regions=await queries.region_names(ctx.db),
                      tag_counts=await tags.tag_counts(ctx.db, ctx.tenant.id, DASHBOARD_TAGS), states=devices.STATES, sorts=LIST_SORTS, **await list_values(ctx, params))


@router.get("/fragments/devices")
async def device_list_fragment(request: Request, ctx: Tenant) -> Response:
    return ctx.render(request, "_device_table.html", **await list_values(ctx, ListParams.from_request(request)))


# --- add ---------------------------------------------------------------------------------------------


@router.get("/devices/new")
async def new_device_page(request: Request, ctx: Tenant) -> Response:
    return ctx.render(request, "device_new.html", page="add", form={}, error=None, csv_text="",
                      csv_problems=[], csv_example=csv_import.EXAMPLE, kinds=devices.KINDS)


@router.post("/devices")
async def create_device(request: Request, ctx: Tenant, form: Form) -> Response:
    try:
        spec = new_device_spec(form)
        created = await devices.create_devices(ctx.db, ctx.tenant.id, [spec], field_prefix="device",
                                               egress=ctx.services.settings.egress_policy(),
                                               quotas=ctx.services.settings.quotas())
    except InputError as exc:
        field = exc.field.removeprefix("device[0].")
        return refused(exc, ctx.render(request, "device_new.html", page="add", form=form,
                                       error=f"{field}: {exc.reason}", csv_text="", csv_problems=[],
                                       csv_example=csv_import.EXAMPLE, kinds=devices.KINDS))
    await devices.notify_devices_changed(ctx.services.redis)
    return ctx.render(request, "devices_created.html", page="add", created=created)


@router.post("/devices/import")
async def import_devices(request: Request, ctx: Tenant, form: Form) -> Response:
    text = str(form.get("csv_text") or "")
    upload = form.get("csv_file")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = await upload.read(MAX_CSV_BYTES + 1)
        if len(raw) > MAX_CSV_BYTES:
            return _import_error(request, ctx, text, [f"the file is larger than {MAX_CSV_BYTES // 1024} KiB; split it"])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _import_error(request, ctx, "", ["the file is not UTF-8 text; export it as CSV (UTF-8)"])
    parsed = csv_import.parse_devices_csv(text)
    if parsed.problems:
        return _import_error(request, ctx, text, [str(p) for p in parsed.problems])
    try:
        specs = [devices.DeviceSpec(**row) for row in parsed.devices]  # type: ignore[arg-type]
        created = await devices.create_devices(ctx.db, ctx.tenant.id, specs, field_prefix="row",
                                               egress=ctx.services.settings.egress_policy(),
                                               quotas=ctx.services.settings.quotas())
    except InputError as exc:
        return refused(exc, _import_error(request, ctx, text, [_csv_line_message(exc, parsed.lines)]))
    await devices.notify_devices_changed(ctx.services.redis)
    return ctx.render(request, "devices_created.html", page="add", created=created)


def refused(exc: InputError, page: Response) -> Response:
    """A form page showing `exc`: 422, or 429 with Retry-After when a quota refused it."""
    page.status_code = 429 if isinstance(exc, QuotaExceeded) else 422
    if isinstance(exc, QuotaExceeded):
        page.headers["Retry-After"] = str(exc.retry_after)
    return page


def _csv_line_message(exc: InputError, lines: list[int]) -> str:
    """`row[3].target: ...` -> `line 5: target: ...` (nothing was created: the import is all or nothing)."""
    head, _, field = exc.field.partition("].")
    index = head.removeprefix("row[")
    if index.isdigit() and int(index) < len(lines):
        return f"line {lines[int(index)]}: {field}: {exc.reason}"
    return f"{exc.field}: {exc.reason}"


def _import_error(request: Request, ctx: TenantRequest, text: str, problems: list[str]) -> Response:
    return ctx.render(request, "device_new.html", status_code=422, page="add", form={}, error=None,
                      csv_text=text, csv_problems=problems, csv_example=csv_import.EXAMPLE, kinds=devices.KINDS)


# --- one device --------------------------------------------------------------------------------------


async def _detail(ctx: TenantRequest, device_id: Id) -> devices.DeviceDetail:
    detail = await devices.get_device(ctx.db, ctx.tenant.id, device_id)
    if detail is None:  # also for another tenant's device: never hint that it exists
        raise NotFound(f"There is no device {device_id} in {ctx.tenant.slug}.")
    return detail


async def _detail_values(ctx: TenantRequest, device_id: Id) -> dict[str, object]:
    detail = await _detail(ctx, device_id)
    return {
        "device": detail.device,
        "region_states": detail.regions,
        "incidents": await incidents.list_incidents(ctx.db, ctx.tenant.id, device_id=device_id, limit=20),
    }


async def _chart(ctx: TenantRequest, device: devices.Device, regions: list[str], window_name: str):
    window = WINDOWS.get(window_name, WINDOWS["hour"])
    end = datetime.now(UTC)
    buckets = await queries.latency_buckets(ctx.db, device.id, end - window.span, window.bucket)
    return build_chart(buckets, window, end, regions)


@router.get("/devices/{device_id}")
async def device_page(request: Request, ctx: Tenant, device_id: Id, window: str = "hour",
                      metric_window: str = "hour") -> Response:
    values = await _detail_values(ctx, device_id)
    regions = [r.region for r in values["region_states"]]  # type: ignore[attr-defined]
    chart = await _chart(ctx, values["device"], regions, window)  # type: ignore[arg-type]
    shown_window, charts = await metric_charts(ctx, device_id, metric_window)
    return ctx.render(request, "device.html", page="devices", chart=chart, metric_window=shown_window,
                      metric_charts=charts, window_labels=WINDOW_LABELS,
                      metric_rules=await metric_rules.rules_for_device(ctx.db, ctx.tenant.id, device_id), **values)


@router.get("/fragments/devices/{device_id}")
async def device_fragment(request: Request, ctx: Tenant, device_id: Id) -> Response:
    return ctx.render(request, "_device_live.html", **await _detail_values(ctx, device_id))


@router.get("/fragments/devices/{device_id}/chart")
async def chart_fragment(request: Request, ctx: Tenant, device_id: Id, window: str = "hour") -> Response:
    detail = await _detail(ctx, device_id)
    chart = await _chart(ctx, detail.device, [r.region for r in detail.regions], window)
    return ctx.render(request, "_chart.html", device=detail.device, chart=chart)


@router.get("/devices/{device_id}/edit")
async def edit_page(request: Request, ctx: Tenant, device_id: Id) -> Response:
    detail = await _detail(ctx, device_id)
    return ctx.render(request, "device_edit.html", page="devices", device=detail.device,
                      form=_form_of(detail.device), error=None, kinds=devices.KINDS)


def _form_of(device: devices.Device) -> dict[str, object]:
    spec = device.spec()
    form = {name: ("" if value is None else value) for name, value in vars_of(spec).items()}
    form["tags"] = ", ".join(spec.tags)
    return form


def vars_of(spec: devices.DeviceSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in devices.EDITABLE_FIELDS}


@router.post("/devices/{device_id}")
async def update_device(request: Request, ctx: Tenant, form: Form, device_id: Id) -> Response:
    detail = await _detail(ctx, device_id)
    try:
        updated = await devices.update_device(ctx.db, ctx.tenant.id, device_id, device_changes(form),
                                              egress=ctx.services.settings.egress_policy(),
                                              quotas=ctx.services.settings.quotas())
    except InputError as exc:
        return refused(exc, ctx.render(request, "device_edit.html", page="devices", device=detail.device,
                                       form=form, error=f"{exc.field}: {exc.reason}", kinds=devices.KINDS))
    if updated is None:
        raise NotFound(f"There is no device {device_id} in {ctx.tenant.slug}.")
    await devices.notify_devices_changed(ctx.services.redis)
    return RedirectResponse(f"/devices/{device_id}", status_code=303)


@router.get("/devices/{device_id}/delete")
async def delete_page(request: Request, ctx: Tenant, device_id: Id) -> Response:
    detail = await _detail(ctx, device_id)
    return ctx.render(request, "device_delete.html", page="devices", device=detail.device)


@router.post("/devices/{device_id}/delete")
async def delete_device(ctx: Tenant, form: Form, device_id: Id) -> Response:
    if not await devices.delete_device(ctx.db, ctx.tenant.id, device_id):
        raise NotFound(f"There is no device {device_id} in {ctx.tenant.slug}.")
    await devices.notify_devices_changed(ctx.services.redis)
    return RedirectResponse("/devices", status_code=303)
