"""Tenant endpoints: creation (admin), whoami, API-key rotation, webhook settings and deliveries."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from iot import quotas, repo
from iot.inputs import Id, Slug
from iot.repo import api_keys, devices, tenants, webhooks
from iot.tracker.auth import AdminAuth, AuthenticateFirst, PrincipalAuth, TenantAuth
from iot.tracker.schemas import (
    ApiKeyOut,
    DeliveryOut,
    DeliveryPageOut,
    ErrorOut,
    QuotasIn,
    QuotasOut,
    QuotaUse,
    TenantCreate,
    TenantCreated,
    TenantOut,
    WebhookIn,
    WebhookOut,
)

router = APIRouter(prefix="/v1", route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 408, 413, 422)})


@router.post("/tenants", status_code=201, response_model=TenantCreated, tags=["admin"],
             responses={409: {"model": ErrorOut}, 403: {"model": ErrorOut}})
async def create_tenant(body: TenantCreate, request: Request, _: AdminAuth) -> TenantCreated:
    """Create a tenant (needs `Authorization: Bearer <ADMIN_TOKEN>`); the API key is shown only here."""
    state = request.app.state
    tenant, api_key = await tenants.create_tenant(
        state.pool, body.slug, body.name, monitor_names=state.settings.monitor_name_set()
    )
    return TenantCreated(id=tenant.id, slug=tenant.slug, api_key=api_key)


@router.put("/tenants/{slug}/quotas", response_model=QuotasOut, tags=["admin"],
            responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}})
async def set_tenant_quotas(slug: Slug, body: QuotasIn, request: Request, _: AdminAuth) -> QuotasOut:
    """Override a tenant's quotas (needs the admin token); null keeps the service default."""
    pool = request.app.state.pool
    tenant = await tenants.tenant_by_slug(pool, slug)
    if tenant is None:
        raise HTTPException(404, detail=f"no tenant {slug!r}")
    await quotas.set_overrides(pool, tenant.id, max_devices=body.max_devices,
                               checks_per_second=body.checks_per_second, points_per_second=body.points_per_second)
    return await _quotas_of(request, tenant.id)


@router.get("/tenant/quotas", response_model=QuotasOut, tags=["tenant"])
async def get_quotas(tenant: TenantAuth, request: Request) -> QuotasOut:
    """This tenant's quotas and how much of them it uses (over quota: 429 with Retry-After)."""
    return await _quotas_of(request, tenant.id)


async def _quotas_of(request: Request, tenant_id: int) -> QuotasOut:
    pool = request.app.state.pool
    limits = await quotas.effective(pool, tenant_id, request.app.state.settings.quotas())
    use = await quotas.usage(pool, tenant_id)
    return QuotasOut(devices=QuotaUse(limit=limits.devices, used=use.devices),
                     checks_per_second=QuotaUse(limit=limits.checks_per_second, used=round(use.checks_per_second, 6)),
                     points_per_second=QuotaUse(limit=limits.points_per_second, used=None))


@router.get("/tenant", response_model=TenantOut, tags=["tenant"])
async def whoami(tenant: TenantAuth, request: Request) -> TenantOut:
    counts = await devices.state_counts(request.app.state.pool, tenant.id)
    return TenantOut(id=tenant.id, slug=tenant.slug, name=tenant.name, webhook_url=tenant.webhook_url,
                     created_at=tenant.created_at, devices_by_state=counts)


@router.post("/tenant/api-key", response_model=ApiKeyOut, tags=["tenant"])
async def rotate_api_key(who: PrincipalAuth, request: Request) -> ApiKeyOut:
    """Replace the API key used for this call (same name and scopes); it stops working at once."""
    new_key = await api_keys.rotate_key(request.app.state.pool, who.tenant.id, who.key_id)
    if new_key is None:  # revoked between authentication and now
        raise HTTPException(401, detail="unknown or revoked tenant API key", headers={"WWW-Authenticate": "Bearer"})
    return ApiKeyOut(api_key=new_key)


@router.put("/webhook", response_model=WebhookOut, tags=["webhooks"])
async def set_webhook(body: WebhookIn, tenant: TenantAuth, request: Request) -> WebhookOut:
    """Where state changes and incidents are POSTed, signed `t=<unix>,v1=<HMAC-SHA256 of "<t>.<body>">` under
    `secret` (and under the previous secret too while it is still valid)."""
    state = request.app.state
    settings = await webhooks.set_webhook(state.pool, tenant.id, body.url, body.secret, egress=state.egress,
                                         previous_secret_valid_s=body.previous_secret_valid_s)
    return WebhookOut(url=settings.url, secret=settings.secret,
                      previous_secret_expires_at=settings.previous_secret_expires_at)


@router.get("/webhook", response_model=WebhookOut, tags=["webhooks"])
async def get_webhook(tenant: TenantAuth, request: Request) -> WebhookOut:
    settings = await webhooks.get_webhook(request.app.state.pool, tenant.id)
    return WebhookOut(url=settings.url, secret=settings.secret,
                      previous_secret_expires_at=settings.previous_secret_expires_at)


@router.get("/webhook/deliveries", response_model=DeliveryPageOut, tags=["webhooks"])
async def list_deliveries(
    tenant: TenantAuth,
    request: Request,
    status: Literal["pending", "delivered", "failed"] | None = None,
    before: Annotated[Id | None, Query(description="Deliveries older than this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=repo.MAX_PAGE)] = 50,
) -> DeliveryPageOut:
    """Delivery history, newest first."""
    items = await webhooks.list_webhook_deliveries(
        request.app.state.pool, tenant.id, status=status, before_id=before, limit=limit
    )
    return DeliveryPageOut(
        items=[DeliveryOut.model_validate(d, from_attributes=True) for d in items],
        next_before=items[-1].id if len(items) == limit else None,
    )
