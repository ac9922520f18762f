"""Notification channel endpoints: CRUD, the kinds on offer, a test send, and each channel's deliveries.
Another tenant's channel id answers 404, like a missing one; configs are answered masked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from iot import repo
from iot.inputs import Id
from iot.notify import CHANNELS, SendContext, test_event
from iot.repo import channels
from iot.tracker.auth import AuthenticateFirst, TenantAuth
from iot.tracker.schemas import ErrorOut
from iot.tracker.schemas.channels import (
    ChannelDeliveryOut,
    ChannelDeliveryPageOut,
    ChannelIn,
    ChannelKindOut,
    ChannelListOut,
    ChannelOut,
    ChannelTestOut,
)

router = APIRouter(prefix="/v1", route_class=AuthenticateFirst, tags=["channels"],
                   responses={status: {"model": ErrorOut} for status in (401, 404, 408, 409, 413, 422)})

NOT_FOUND = "no such channel in this tenant"
TEST_TIMEOUT_S = 10.0


def _out(channel: channels.StoredChannel) -> ChannelOut:
    return ChannelOut(id=channel.id, name=channel.name, kind=channel.kind, config=channel.config_shown,
                      events=channel.events, route=channel.route, route_tags=channel.route_tags,
                      route_device_ids=channel.route_device_ids, enabled=channel.enabled,
                      created_at=channel.created_at, updated_at=channel.updated_at)


def _spec(body: ChannelIn) -> channels.ChannelSpec:
    return channels.ChannelSpec(name=body.name, kind=body.kind, config=body.config, events=list(body.events),
                                route=body.route, route_tags=list(body.route_tags),
                                route_device_ids=list(body.route_device_ids), enabled=body.enabled)


def _not_found(channel_id: int) -> HTTPException:
    return HTTPException(404, detail=f"{NOT_FOUND}: {channel_id}")


@router.get("/channel-kinds", response_model=list[ChannelKindOut], summary="Channel kinds on offer")
async def list_kinds(_tenant: TenantAuth) -> list[ChannelKindOut]:
    """Every channel kind with its label and an example config."""
    return [ChannelKindOut(kind=c.kind, label=c.label, example=c.example) for c in CHANNELS.values()]


@router.get("/channels", response_model=ChannelListOut, summary="List notification channels")
async def list_all(tenant: TenantAuth, request: Request) -> ChannelListOut:
    return ChannelListOut(items=[_out(c) for c in await channels.list_channels(request.app.state.pool, tenant.id)])


@router.post("/channels", response_model=ChannelOut, status_code=201, summary="Create a notification channel")
async def create(body: ChannelIn, tenant: TenantAuth, request: Request) -> ChannelOut:
    """The config is checked by the kind (an Apprise URL of that service, addresses, an https webhook URL) and
    by the egress policy (hosts must be public internet addresses): a 422 names the field otherwise."""
    state = request.app.state
    channel = await channels.create_channel(state.pool, state.settings.secret_box(), tenant.id, _spec(body),
                                            egress=state.egress)
    return _out(channel)


@router.get("/channels/{channel_id}", response_model=ChannelOut, summary="Get a notification channel")
async def get(channel_id: Id, tenant: TenantAuth, request: Request) -> ChannelOut:
    channel = await channels.get_channel(request.app.state.pool, tenant.id, channel_id)
    if channel is None:
        raise _not_found(channel_id)
    return _out(channel)


@router.put("/channels/{channel_id}", response_model=ChannelOut, summary="Replace a notification channel")
async def replace(channel_id: Id, body: ChannelIn, tenant: TenantAuth, request: Request) -> ChannelOut:
    """All fields are replaced; a null `config` keeps the stored (secret) config."""
    state = request.app.state
    channel = await channels.update_channel(state.pool, state.settings.secret_box(), tenant.id, channel_id,
                                            _spec(body), egress=state.egress)
    if channel is None:
        raise _not_found(channel_id)
    return _out(channel)


@router.delete("/channels/{channel_id}", status_code=204, summary="Delete a notification channel")
async def delete(channel_id: Id, tenant: TenantAuth, request: Request) -> Response:
    """Its queued deliveries go with it."""
    if not await channels.delete_channel(request.app.state.pool, tenant.id, channel_id):
        raise _not_found(channel_id)
    return Response(status_code=204)


@router.post("/channels/{channel_id}/test", response_model=ChannelTestOut, summary="Send a test message")
async def send_test(channel_id: Id, tenant: TenantAuth, request: Request) -> ChannelTestOut:
    """Sends one test message now (not queued, not retried) and answers whether it arrived."""
    state = request.app.state
    opened = await channels.open_channel(state.pool, state.settings.secret_box(), tenant.id, channel_id)
    if opened is None:
        raise _not_found(channel_id)
    kind, config = opened
    event = test_event(tenant.slug, state.settings.domain)
    status, error = await CHANNELS[kind].send(
        config, event, SendContext(egress=state.egress, smtp=state.settings, timeout_s=TEST_TIMEOUT_S))
    return ChannelTestOut(delivered=error is None, status_code=status, error=error)


@router.get("/channels/{channel_id}/deliveries", response_model=ChannelDeliveryPageOut,
            summary="A channel's delivery history")
async def deliveries(
    channel_id: Id, tenant: TenantAuth, request: Request,
    before: Annotated[Id | None, Query(description="Deliveries older than this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=repo.MAX_PAGE)] = 50,
) -> ChannelDeliveryPageOut:
    """Newest first: status, attempts, the last error (fixed texts; nothing the receiver sent)."""
    pool = request.app.state.pool
    if await channels.get_channel(pool, tenant.id, channel_id) is None:
        raise _not_found(channel_id)
    items = await channels.list_channel_deliveries(pool, tenant.id, channel_id, before_id=before, limit=limit)
    return ChannelDeliveryPageOut(items=[ChannelDeliveryOut.model_validate(d, from_attributes=True) for d in items],
                                  next_before=items[-1].id if len(items) == limit else None)
