"""Tenant endpoints: creation (admin), whoami, API-key rotation, webhook settings and deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from iot import devices, tenants
from iot.tracker.auth import AdminAuth, TenantAuth
from iot.tracker.schemas import (
    ApiKeyOut,
    DeliveryOut,
    DeliveryPageOut,
    ErrorOut,
    TenantCreate,
    TenantCreated,
    TenantOut,
    WebhookIn,
    WebhookOut,
)

router = APIRouter(prefix="/v1", responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("/tenants", status_code=201, response_model=TenantCreated, tags=["admin"],
             responses={409: {"model": ErrorOut}, 403: {"model": ErrorOut}})
async def create_tenant(body: TenantCreate, request: Request, _: AdminAuth) -> TenantCreated:
    """Create a tenant (needs `Authorization: Bearer <ADMIN_TOKEN>`); the API key is shown only here."""
    state = request.app.state
    tenant, api_key = await tenants.create_tenant(
        state.pool, body.slug, body.name, monitor_names=state.settings.monitor_name_set()
    )
    return TenantCreated(id=tenant.id, slug=tenant.slug, api_key=api_key)


@router.get("/tenant", response_model=TenantOut, tags=["tenant"])
async def whoami(tenant: TenantAuth, request: Request) -> TenantOut:
    counts = await devices.state_counts(request.app.state.pool, tenant.id)
    return TenantOut(id=tenant.id, slug=tenant.slug, name=tenant.name, webhook_url=tenant.webhook_url,
                     created_at=tenant.created_at, devices_by_state=counts)


@router.post("/tenant/api-key", response_model=ApiKeyOut, tags=["tenant"])
async def rotate_api_key(tenant: TenantAuth, request: Request) -> ApiKeyOut:
    """Replace this tenant's API key; the key used for this call stops working."""
    return ApiKeyOut(api_key=await tenants.rotate_api_key(request.app.state.pool, tenant.id))


@router.put("/webhook", response_model=WebhookOut, tags=["webhooks"])
async def set_webhook(body: WebhookIn, tenant: TenantAuth, request: Request) -> WebhookOut:
    """Where state changes and incidents are POSTed, signed `t=<unix>,v1=<HMAC-SHA256 of "<t>.<body>">` under
    `secret` (and under the previous secret too while it is still valid)."""
    state = request.app.state
    settings = await tenants.set_webhook(state.pool, tenant.id, body.url, body.secret, egress=state.egress,
                                         previous_secret_valid_s=body.previous_secret_valid_s)
    return WebhookOut(url=settings.url, secret=settings.secret,
                      previous_secret_expires_at=settings.previous_secret_expires_at)


@router.get("/webhook", response_model=WebhookOut, tags=["webhooks"])
async def get_webhook(tenant: TenantAuth, request: Request) -> WebhookOut:
    settings = await tenants.get_webhook(request.app.state.pool, tenant.id)
    return WebhookOut(url=settings.url, secret=settings.secret,
                      previous_secret_expires_at=settings.previous_secret_expires_at)


@router.get("/webhook/deliveries", response_model=DeliveryPageOut, tags=["webhooks"])
async def list_deliveries(
    tenant: TenantAuth,
    request: Request,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
    before: Annotated[int | None, Query(ge=1, description="Deliveries older than this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=devices.MAX_PAGE)] = 50,
) -> DeliveryPageOut:
    """Delivery history, newest first."""
    items = await devices.list_webhook_deliveries(
        request.app.state.pool, tenant.id, status=status, before_id=before, limit=limit
    )
    return DeliveryPageOut(
        items=[DeliveryOut.model_validate(d, from_attributes=True) for d in items],
        next_before=items[-1].id if len(items) == limit else None,
    )
