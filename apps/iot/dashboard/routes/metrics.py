"""Metric pages: charts of a device's metrics (hour / day / 30 days) and the metric rules page (list, add, pause,
delete). Rules go through `repo.metric_rules`, so the dashboard refuses what the API refuses, with its reasons."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from iot.dashboard.charts import WINDOWS, Chart, metric_chart
from iot.dashboard.context import Form, NotFound, Tenant, TenantRequest
from iot.errors import InputError
from iot.inputs import Id
from iot.repo import devices, metric_rules, metrics
from iot.repo.metric_rules import MAX_FOR_S, RuleSpec

router = APIRouter()

# Chart window -> series range of repo.metrics (raw points, minute rollups, hourly buckets).
METRIC_WINDOWS = {"hour": "1h", "day": "1d", "month": "30d"}
WINDOW_LABELS = {"hour": "last hour", "day": "last day", "month": "last 30 days"}
MAX_CHARTS = 12  # metric names charted on one device page (the newest-named first would be arbitrary: by name)


@dataclass(frozen=True, slots=True)
class MetricChart:
    name: str
    latest: metrics.Latest
    chart: Chart


async def metric_charts(ctx: TenantRequest, device_id: int, window: str) -> tuple[str, list[MetricChart]]:
    """(the window shown, one chart per metric the device pushed, by name)."""
    window = window if window in METRIC_WINDOWS else "hour"
    end = datetime.now(UTC)
    charts = []
    for latest in (await metrics.latest(ctx.db, ctx.tenant.id, device_id))[:MAX_CHARTS]:
        series = await metrics.series(ctx.db, ctx.tenant.id, device_id, latest.name, METRIC_WINDOWS[window])
        points = [(p.ts, p.value, p.count) for p in series.points]
        charts.append(MetricChart(latest.name, latest, metric_chart(points, latest.name, WINDOWS[window], end)))
    return window, charts


@router.get("/fragments/devices/{device_id}/metrics")
async def metric_charts_fragment(request: Request, ctx: Tenant, device_id: Id, metric_window: str = "hour"
                                 ) -> Response:
    detail = await devices.get_device(ctx.db, ctx.tenant.id, device_id)
    if detail is None:
        raise NotFound(f"There is no device {device_id} in {ctx.tenant.slug}.")
    window, charts = await metric_charts(ctx, device_id, metric_window)
    return ctx.render(request, "_metric_charts.html", device=detail.device, metric_window=window,
                      metric_charts=charts, window_labels=WINDOW_LABELS)


# --- rules -------------------------------------------------------------------------------------------


def rule_spec(form: dict) -> RuleSpec:
    """The add-rule form as a spec; the scope field picks a device by name or a tag."""

    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    def number(name: str, cast: type = float) -> float | int | None:
        value = text(name)
        if not value:
            return None
        try:
            number = cast(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InputError(name, f"must be a number, got {value[:40]!r}")
        return number

    kind = text("kind") or "threshold"
    minutes = number("for_min")
    if minutes is not None and not 0 <= minutes <= MAX_FOR_S / 60:  # round(1e308 * 60) would raise
        raise InputError("for_min", f"must be between 0 (at once) and {MAX_FOR_S // 60} minutes")
    return RuleSpec(
        metric=text("metric"), kind=kind, tag=text("tag") or None,
        operator=text("operator") or None if kind == "threshold" else None,
        threshold=number("threshold") if kind == "threshold" else None,
        z_score=number("z_score") if kind == "anomaly" else None,
        for_s=0 if minutes is None else round(minutes * 60),
    )


async def _rules_page(request: Request, ctx: TenantRequest, status_code: int = 200, **values: object) -> Response:
    values = {"error": None, "form": {}, **values}
    return ctx.render(request, "rules.html", status_code=status_code, page="rules",
                      rules=await metric_rules.list_rules(ctx.db, ctx.tenant.id),
                      operators=metric_rules.OPERATORS, **values)


@router.get("/rules")
async def rules_page(request: Request, ctx: Tenant) -> Response:
    return await _rules_page(request, ctx)


@router.post("/rules")
async def create_rule(request: Request, ctx: Tenant, form: Form) -> Response:
    try:
        spec = rule_spec(form)
        device_name = str(form.get("device") or "").strip()
        if bool(device_name) == bool(spec.tag):
            raise InputError("device", "give a device name or a tag (every device carrying it), exactly one of them")
        if device_name:
            found = await metric_rules.device_id_by_name(ctx.db, ctx.tenant.id, device_name)
            if found is None:
                raise InputError("device", f"no device named {device_name[:60]!r}; pick one from the list")
            spec.device_id = found
        await metric_rules.create_rule(ctx.db, ctx.tenant.id, spec)
    except InputError as exc:
        field = "device" if exc.field == "device_id" else exc.field
        return await _rules_page(request, ctx, status_code=422, form=form, error=f"{field}: {exc.reason}")
    return RedirectResponse("/rules", status_code=303)


@router.post("/rules/{rule_id}/enabled")
async def toggle_rule(request: Request, ctx: Tenant, form: Form, rule_id: Id) -> Response:
    enabled = form.get("enabled") == "true"
    if await metric_rules.update_rule(ctx.db, ctx.tenant.id, rule_id, {"enabled": enabled}) is None:
        raise NotFound(f"There is no metric rule {rule_id} in {ctx.tenant.slug}.")
    return RedirectResponse("/rules", status_code=303)


@router.post("/rules/{rule_id}/delete")
async def delete_rule(request: Request, ctx: Tenant, form: Form, rule_id: Id) -> Response:
    if not await metric_rules.delete_rule(ctx.db, ctx.tenant.id, rule_id):
        raise NotFound(f"There is no metric rule {rule_id} in {ctx.tenant.slug}.")
    return RedirectResponse("/rules", status_code=303)
