"""Device list (server-side paging, filters, sort), detail with charts, add (one or CSV), edit, delete."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import ImmutableMultiDict, UploadFile

from iot.dashboard import check_options, csv_import, queries
from iot.dashboard.charts import WINDOWS, build_chart
from iot.dashboard.context import Form, NotFound, Tenant, TenantRequest
from iot.dashboard.forms import device_changes, new_device_spec
from iot.dashboard.parents import parent_choices
from iot.dashboard.routes.history import sla_values, uptime_summary
from iot.dashboard.routes.metrics import WINDOW_LABELS, metric_charts
from iot.errors import InputError, QuotaExceeded
from iot.inputs import (
    DNS_LABEL,
    INT8_MAX,
    MAX_NAME,
    MAX_SEARCH,
    MAX_TAGS,
    Id,
    ascii_int,
    normalise_tag,
    text_problem,
)
from iot.repo import (
    device_checks,
    device_parents,
    devices,
    history,
    incidents,
    maintenance,
    metric_rules,
    metrics,
    tags,
)
from iot.repo._db import connection
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
        return cls.from_values(request.query_params)

    @classmethod
    def from_values(cls, qp: ImmutableMultiDict) -> ListParams:
        """From a query string or a form carrying the same fields (the bulk form repeats the list's filters)."""
        try:
            page = min(max(1, int(qp.get("page", "1"))), MAX_PAGE_NUMBER)
        except ValueError:
            page = 1
        state = str(qp.get("state", ""))
        sort = str(qp.get("sort", "name"))
        q = str(qp.get("q", "")).strip()[:MAX_SEARCH]
        region = str(qp.get("region", "")).strip()
        valid_tags = (normalise_tag(t) for t in qp.getlist("tag")[:MAX_TAGS] if isinstance(t, str))
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


async def render_list(request: Request, ctx: TenantRequest, params: ListParams, status_code: int = 200,
                      **extra: object) -> Response:
    """The list page (also shown again by a refused bulk action, with its error in `extra`)."""
    return ctx.render(request, "devices.html", status_code=status_code, page="devices",
                      regions=await queries.region_names(ctx.db),
                      tag_counts=await tags.tag_counts(ctx.db, ctx.tenant.id, DASHBOARD_TAGS), states=devices.STATES,
                      sorts=LIST_SORTS, bulk_actions=BULK_ACTIONS, **extra, **await list_values(ctx, params))


# The bulk form's actions with their labels (repo.device_bulk.ACTIONS in the order the form offers them).
BULK_ACTIONS = {"pause": "Pause checks", "resume": "Resume checks", "tag_add": "Add tags", "tag_remove": "Remove tags",
                "set_interval": "Set interval", "delete": "Delete"}


@router.get("/devices")
async def device_list(request: Request, ctx: Tenant) -> Response:
    qp = request.query_params
    done = None
    changed, matched = ascii_int(qp.get("changed", "")), ascii_int(qp.get("matched", ""))
    if qp.get("bulk") in BULK_ACTIONS and changed is not None and matched is not None:
        done = {"action": BULK_ACTIONS[qp["bulk"]], "changed": changed, "matched": matched}
    return await render_list(request, ctx, ListParams.from_request(request), bulk_done=done, bulk_error=None)


@router.get("/fragments/devices")
async def device_list_fragment(request: Request, ctx: Tenant) -> Response:
    return ctx.render(request, "_device_table.html", **await list_values(ctx, ListParams.from_request(request)))


# --- add ---------------------------------------------------------------------------------------------


@router.get("/devices/new")
async def new_device_page(request: Request, ctx: Tenant) -> Response:
    return ctx.render(request, "device_new.html", page="add", form={}, error=None, csv_text="",
                      choices=await parent_choices(ctx.db, ctx.tenant.id, "", None),
                      csv_problems=[], csv_example=csv_import.EXAMPLE, kinds=devices.KINDS)


@router.post("/devices")
async def create_device(request: Request, ctx: Tenant, form: Form) -> Response:
    try:
        spec = new_device_spec(form)
        created = await devices.create_devices(ctx.db, ctx.tenant.id, [spec], field_prefix="device",
                                               egress=ctx.services.settings.egress_policy(),
                                               quotas=ctx.services.settings.quotas(),
                                              box=ctx.services.settings.secret_box())
    except InputError as exc:
        field = exc.field.removeprefix("device[0].")
        return refused(exc, ctx.render(request, "device_new.html", page="add", form=form,
                                       choices=await parent_choices(ctx.db, ctx.tenant.id, form.get("parent_q"),
                                                                    form.get("parent_id")),
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
            return await _import_error(request, ctx, text, [f"the file is larger than {MAX_CSV_BYTES // 1024} KiB; split it"])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return await _import_error(request, ctx, "", ["the file is not UTF-8 text; export it as CSV (UTF-8)"])
    parsed = csv_import.parse_devices_csv(text)
    parents = [str(row.pop(csv_import.PARENT_COLUMN, "") or "") for row in parsed.devices]
    specs = [devices.DeviceSpec(**row) for row in parsed.devices]  # type: ignore[arg-type]
    egress = ctx.services.settings.egress_policy()
    # Every bad line at once: the shape problems of the parser and the value problems of the shape-ok lines.
    problems = list(parsed.problems)
    if specs and not any(p.line == 0 for p in problems):
        problems += [csv_import.CsvProblem(parsed.lines[p.index], p.reason, p.field)
                     for p in await device_checks.spec_problems(ctx.db, ctx.tenant.id, specs, egress=egress)]
        problems += [csv_import.CsvProblem(parsed.lines[i], reason, csv_import.PARENT_COLUMN) for i, reason in
                     (await device_parents.parent_problems(ctx.db, ctx.tenant.id, [s.name for s in specs],
                                                           parents)).items()]
    if problems:
        problems.sort(key=lambda p: p.line)
        return await _import_error(request, ctx, text, [str(p) for p in problems])
    try:
        async with connection(ctx.db) as conn, conn.transaction():  # devices and their parents, or nothing
            created = await devices.create_devices(conn, ctx.tenant.id, specs, field_prefix="row", egress=egress,
                                                   quotas=ctx.services.settings.quotas(),
                                                   box=ctx.services.settings.secret_box())
            await device_parents.link_parents(conn, ctx.tenant.id, {c.name: c.id for c in created},
                                              {s.name: p for s, p in zip(specs, parents, strict=True) if p})
    except InputError as exc:  # the quota, or a name taken since the check
        return refused(exc, await _import_error(request, ctx, text, [_csv_line_message(exc, parsed.lines)]))
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


async def _import_error(request: Request, ctx: TenantRequest, text: str, problems: list[str]) -> Response:
    return ctx.render(request, "device_new.html", status_code=422, page="add", form={}, error=None,
                      choices=await parent_choices(ctx.db, ctx.tenant.id, "", None),
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
        "windows": await maintenance.device_windows(ctx.db, ctx.tenant.id, device_id),
    }


async def _chart(ctx: TenantRequest, device: devices.Device, regions: list[str], window_name: str):
    window = WINDOWS.get(window_name, WINDOWS["hour"])
    end = datetime.now(UTC)
    if window.name in history.RANGES:  # 7d, 30d, 90d: hourly rollups
        buckets = await queries.history_buckets(ctx.db, ctx.tenant.id, device.id, window.name)
    else:
        buckets = await queries.latency_buckets(ctx.db, device.id, end - window.span, window.bucket)
    return build_chart(buckets, window, end, regions)


@router.get("/devices/{device_id}")
async def device_page(request: Request, ctx: Tenant, device_id: Id, window: str = "hour",
                      metric_window: str = "hour") -> Response:
    values = await _detail_values(ctx, device_id)
    regions = [r.region for r in values["region_states"]]  # type: ignore[attr-defined]
    chart = await _chart(ctx, values["device"], regions, window)  # type: ignore[arg-type]
    device = values["device"]
    options = check_options.describe(device.kind, device.options)  # type: ignore[attr-defined]
    parent_id = device.parent_id  # type: ignore[attr-defined]
    parent = await devices.get_device(ctx.db, ctx.tenant.id, parent_id) if parent_id else None
    uptime = await uptime_summary(ctx.db, ctx.tenant.id, device_id)
    shown_window, charts = await metric_charts(ctx, device_id, metric_window)
    return ctx.render(request, "device.html", page="devices", chart=chart, options=options,
                      parent=parent and parent.device, uptime=uptime, metric_window=shown_window,
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
                      choices=await parent_choices(ctx.db, ctx.tenant.id, "", detail.device.parent_id, device_id),
                      form=_form_of(detail.device), error=None, kinds=devices.KINDS,
                      sla=await sla_values(ctx.db, ctx.tenant.id, device_id))


def _form_of(device: devices.Device) -> dict[str, object]:
    spec = device.spec()
    form = {name: ("" if value is None else value) for name, value in vars_of(spec).items()}
    form["tags"] = ", ".join(spec.tags)
    form.update(check_options.form_values(spec.options))
    form["has_headers"] = bool(spec.options.get("headers"))
    return form


def vars_of(spec: devices.DeviceSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in devices.EDITABLE_FIELDS}


@router.post("/devices/{device_id}")
async def update_device(request: Request, ctx: Tenant, form: Form, device_id: Id) -> Response:
    detail = await _detail(ctx, device_id)
    try:
        same_kind = form.get("kind") == detail.device.kind
        changes = device_changes(form, detail.device.options if same_kind else None)
        updated = await devices.update_device(ctx.db, ctx.tenant.id, device_id, changes,
                                              egress=ctx.services.settings.egress_policy(),
                                              quotas=ctx.services.settings.quotas(),
                                              box=ctx.services.settings.secret_box())
    except InputError as exc:
        return refused(exc, ctx.render(request, "device_edit.html", page="devices", device=detail.device,
                                       choices=await parent_choices(ctx.db, ctx.tenant.id, form.get("parent_q"),
                                                                    form.get("parent_id"), device_id),
                                       form=form, error=f"{exc.field}: {exc.reason}", kinds=devices.KINDS,
                                       sla=await sla_values(ctx.db, ctx.tenant.id, device_id)))
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
