"""Uptime on the device page (24h/7d/30d/90d, 90 daily bars, SLA breach) and the SLA target form (issue 14).

The device page and the edit page (routes.devices) call `uptime_summary` and `sla_values`; the form posts
here. Every read goes through `repo.history`, which loads the device with the tenant id first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from iot.dashboard.context import Form, NotFound, Tenant
from iot.errors import InputError
from iot.inputs import Id
from iot.repo import history, maintenance
from iot.repo._db import Executor
from iot.uptime import Uptime

router = APIRouter()

MAX_SLA_TEXT = 20


@dataclass(frozen=True, slots=True)
class RangeFigure:
    name: str
    uptime: Uptime
    breach: bool | None

    @property
    def down_text(self) -> str:
        return _duration(self.uptime.down_seconds)

    @property
    def excluded_text(self) -> str:
        return _duration(self.uptime.excluded_seconds)


@dataclass(frozen=True, slots=True)
class DayBar:
    day: Uptime
    level: str  # css class: ok, warn, bad, none

    @property
    def title(self) -> str:
        label = f"{self.day.start:%Y-%m-%d}"
        if self.day.percent is None:
            return f"{label}: no data"
        text = f"{label}: {self.day.percent:.2f} % up, {_duration(self.day.down_seconds)} down"
        if self.day.excluded_seconds:
            text += f", {_duration(self.day.excluded_seconds)} in maintenance"
        return text


@dataclass(frozen=True, slots=True)
class UptimeSummary:
    sla_target: float | None
    ranges: list[RangeFigure]
    bars: list[DayBar]


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def bar_level(day: Uptime, target: float | None) -> str:
    if day.percent is None:
        return "none"
    if day.percent >= (target if target is not None else 99.9):
        return "ok"
    return "warn" if day.percent >= 99.0 else "bad"


async def uptime_summary(db: Executor, tenant_id: int, device_id: int) -> UptimeSummary | None:
    now = datetime.now(UTC)
    excluded = await maintenance.device_intervals(db, tenant_id, device_id, now - history.LOOKBACK, now)
    reports = await history.uptime_all_ranges(db, tenant_id, device_id, now=now, excluded=excluded)
    if reports is None:
        return None
    target = reports["90d"].device.sla_target
    return UptimeSummary(target, [RangeFigure(name, r.total, r.breach) for name, r in reports.items()],
                         [DayBar(d, bar_level(d, target)) for d in reports["90d"].days])


async def sla_values(db: Executor, tenant_id: int, device_id: int) -> dict[str, object]:
    device = await history.device_head(db, tenant_id, device_id)
    target = device.sla_target if device else None
    return {"sla_target": "" if target is None else f"{target:g}", "error": None}


def parse_sla(text: str) -> float | None:
    text = text.strip().removesuffix("%").strip()
    if not text:
        return None
    if len(text) > MAX_SLA_TEXT:
        raise InputError("sla_target", "is too long; write a percentage such as 99.9")
    try:
        return float(text)
    except ValueError:
        raise InputError("sla_target", f"{text!r} is not a number; write a percentage such as 99.9") from None


@router.post("/devices/{device_id}/sla")
async def update_sla(request: Request, ctx: Tenant, form: Form, device_id: Id) -> Response:
    device = await history.device_head(ctx.db, ctx.tenant.id, device_id)
    if device is None:
        raise NotFound(f"There is no device {device_id} in {ctx.tenant.slug}.")
    raw = str(form.get("sla_target") or "")
    try:
        await history.set_sla_target(ctx.db, ctx.tenant.id, device_id, parse_sla(raw))
    except InputError as exc:
        return ctx.render(request, "device_sla.html", status_code=422, page="devices", device=device,
                          sla={"sla_target": raw[:MAX_SLA_TEXT], "error": f"{exc.field}: {exc.reason}"})
    return RedirectResponse(f"/devices/{device_id}", status_code=303)
