"""Notification settings: the tenant's channels (list, add, edit, delete, send a test), over `repo.channels`."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from iot.dashboard.context import Form, NotFound, Tenant, TenantRequest, require_role
from iot.errors import InputError
from iot.inputs import Id
from iot.notify import CHANNELS, EVENT_KINDS, SendContext, test_event
from iot.repo import channels, device_list
from iot.repo.channels import ChannelSpec

# Channels: everyone may look, admins change them.
router = APIRouter(dependencies=[Depends(require_role("admin", writes_only=True))])

EVENT_LABELS = {"down": "Down", "up": "Up again (with duration)", "degraded": "Degraded", "silent": "Silent (push)",
                "metric": "Metric rule incidents (opened, resolved)",
                "region_unhealthy": "Monitoring region unhealthy"}
MAX_DEVICE_CHOICES = 500


def _box(ctx: TenantRequest):
    return ctx.services.settings.secret_box()


async def _devices(ctx: TenantRequest) -> list[Any]:
    page = await device_list.list_devices(ctx.db, ctx.tenant.id, device_list.DeviceQuery(sort="name", limit=MAX_DEVICE_CHOICES))
    return list(page.items)


async def _page(request: Request, ctx: TenantRequest, status_code: int = 200, **values: Any) -> Response:
    values = {"error": None, "notice": None, "form": {}, "editing": None, **values}
    return ctx.render(request, "notifications.html", status_code=status_code, page="notifications",
                      channels=await channels.list_channels(ctx.db, ctx.tenant.id), kinds=CHANNELS,
                      event_kinds=EVENT_KINDS, event_labels=EVENT_LABELS, devices=await _devices(ctx), **values)


async def _spec(request: Request, form: dict[str, Any], keep_config: bool) -> ChannelSpec:
    """The channel the form describes; an empty target on an edit keeps the stored config."""
    kind = str(form.get("kind") or "")
    target = str(form.get("target") or "").strip()
    config: dict[str, Any] | None
    if not target and keep_config:
        config = None
    elif kind == "email":
        config = {"to": [a for a in re.split(r"[\s,;]+", target) if a]}
    elif kind == "webhook":
        secret = str(form.get("secret") or "").strip()
        config = {"url": target, **({"secret": secret} if secret else {})}
    else:
        config = {"url": target}
    multi = await request.form()
    try:
        device_ids = [int(v) for v in multi.getlist("device")]
    except ValueError:
        raise InputError("route_device_ids", "choose devices from the list") from None
    return ChannelSpec(
        name=str(form.get("name") or "").strip(), kind=kind, config=config,
        events=[e for e in EVENT_KINDS if form.get(f"event_{e}")], route=str(form.get("route") or "all"),
        route_tags=[t for t in re.split(r"[\s,]+", str(form.get("tags") or "")) if t],
        route_device_ids=device_ids, enabled=bool(form.get("enabled")),
    )


def _error_text(exc: InputError) -> str:
    labels = {"config.url": "URL", "config.to": "Recipients", "config.secret": "Secret", "route_tags": "Tags",
              "route_device_ids": "Devices", "events": "Events", "name": "Name", "kind": "Kind"}
    field = labels.get(exc.field.split("[")[0], exc.field)
    return f"{field}: {exc.reason}"


@router.get("/notifications")
async def notifications_page(request: Request, ctx: Tenant) -> Response:
    return await _page(request, ctx)


@router.post("/notifications")
async def add_channel(request: Request, ctx: Tenant, form: Form) -> Response:
    try:
        created = await channels.create_channel(ctx.db, _box(ctx), ctx.tenant.id, await _spec(request, form, False),
                                                egress=ctx.services.settings.egress_policy())
    except InputError as exc:
        return await _page(request, ctx, status_code=422, form=form, error=_error_text(exc))
    return await _page(request, ctx, notice=f"Channel {created.name!r} added. Send a test to check it.")


async def _own(ctx: TenantRequest, channel_id: int) -> channels.StoredChannel:
    channel = await channels.get_channel(ctx.db, ctx.tenant.id, channel_id)
    if channel is None:
        raise NotFound(f"No notification channel {channel_id} in {ctx.tenant.slug}.")
    return channel


@router.get("/notifications/{channel_id}/edit")
async def edit_page(request: Request, ctx: Tenant, channel_id: Id) -> Response:
    return await _page(request, ctx, editing=await _own(ctx, channel_id))


@router.post("/notifications/{channel_id}")
async def save_channel(request: Request, ctx: Tenant, form: Form, channel_id: Id) -> Response:
    editing = await _own(ctx, channel_id)
    try:
        saved = await channels.update_channel(ctx.db, _box(ctx), ctx.tenant.id, channel_id,
                                              await _spec(request, form, True),
                                              egress=ctx.services.settings.egress_policy())
    except InputError as exc:
        return await _page(request, ctx, status_code=422, form=form, editing=editing, error=_error_text(exc))
    if saved is None:
        raise NotFound(f"No notification channel {channel_id} in {ctx.tenant.slug}.")
    return await _page(request, ctx, notice=f"Channel {saved.name!r} saved.")


@router.post("/notifications/{channel_id}/delete")
async def delete_channel(request: Request, ctx: Tenant, form: Form, channel_id: Id) -> Response:
    channel = await _own(ctx, channel_id)
    await channels.delete_channel(ctx.db, ctx.tenant.id, channel_id)
    return await _page(request, ctx, notice=f"Channel {channel.name!r} deleted.")


@router.post("/notifications/{channel_id}/test")
async def test_channel(request: Request, ctx: Tenant, form: Form, channel_id: Id) -> Response:
    channel = await _own(ctx, channel_id)
    try:
        opened = await channels.open_channel(ctx.db, _box(ctx), ctx.tenant.id, channel_id)
    except InputError as exc:
        return await _page(request, ctx, status_code=422, error=_error_text(exc))
    if opened is None:
        raise NotFound(f"No notification channel {channel_id} in {ctx.tenant.slug}.")
    kind, config = opened
    settings = ctx.services.settings
    _status, error = await CHANNELS[kind].send(config, test_event(ctx.tenant.slug, settings.domain),
                                               SendContext(egress=settings.egress_policy(), smtp=settings))
    if error:
        return await _page(request, ctx, error=f"Test to {channel.name!r} did not arrive: {error}")
    return await _page(request, ctx, notice=f"Test sent to {channel.name!r}: it arrived.")


@router.get("/notifications/{channel_id}")
async def channel_link(channel_id: Id) -> Response:
    return RedirectResponse(f"/notifications/{channel_id}/edit", status_code=303)
