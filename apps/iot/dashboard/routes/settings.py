"""Tenant settings (admins): webhook URL and secret, the original API key's rotation, named and scoped API keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from iot.dashboard.context import Form, NotFound, Tenant, TenantRequest, require_role
from iot.dashboard.routes.auth import set_session_cookie
from iot.errors import InputError
from iot.inputs import Id
from iot.repo import api_keys, tenants, webhooks
from iot.tokens import token_hash

# API keys and the webhook (its secret is on the page): admins only, reading too.
router = APIRouter(dependencies=[Depends(require_role("admin"))])


async def _settings_page(request: Request, ctx: TenantRequest, status_code: int = 200, **values: object) -> Response:
    webhook = await webhooks.get_webhook(ctx.db, ctx.tenant.id)
    deliveries = await webhooks.list_webhook_deliveries(ctx.db, ctx.tenant.id, limit=10)
    values = {"error": None, "notice": None, "new_api_key": None, "created_key": None, "form": {}, **values}
    keys = await api_keys.list_api_keys(ctx.db, ctx.tenant.id, limit=200)
    return ctx.render(request, "settings.html", status_code=status_code, page="settings", webhook=webhook,
                      api_keys=keys, scopes=api_keys.SCOPES,
                      deliveries=deliveries, tracker_url=ctx.services.settings.tracker_public_url, **values)


@router.get("/settings")
async def settings_page(request: Request, ctx: Tenant) -> Response:
    return await _settings_page(request, ctx)


@router.post("/settings/webhook")
async def save_webhook(request: Request, ctx: Tenant, form: Form) -> Response:
    url = str(form.get("webhook_url") or "").strip()
    secret = str(form.get("webhook_secret") or "").strip()
    try:
        await webhooks.set_webhook(ctx.db, ctx.tenant.id, url or None, secret or None,
                                  egress=ctx.services.settings.egress_policy())
    except InputError as exc:
        return await _settings_page(request, ctx, status_code=422, form=form,
                                    error=f"webhook {exc.field}: {exc.reason}")
    notice = "Webhook saved." if url else "Webhook removed: no more deliveries."
    return await _settings_page(request, ctx, notice=notice)


@router.post("/settings/api-key")
async def rotate_api_key(request: Request, ctx: Tenant, form: Form) -> Response:
    new_key = await tenants.rotate_api_key(ctx.db, ctx.tenant.id)
    if ctx.user is not None:  # a user's session does not hang on the key
        return await _settings_page(request, ctx, new_api_key=new_key,
                                    notice="The old API key stopped working just now. Copy the new key: it is "
                                           "shown only once.")
    # Every session opened with the old key ends now, except this browser's: it gets a fresh one.
    session, cookie = ctx.services.sessions.new(ctx.tenant.id, ctx.tenant.slug, token_hash(new_key))
    await ctx.services.session_store.open(session)
    if ctx.session is not None:
        await ctx.services.session_store.close(ctx.session)
    response = await _settings_page(
        request, ctx, session=session, new_api_key=new_key,
        notice="The old API key stopped working just now, and other dashboard sessions were signed out. "
               "Copy the new key: it is shown only once.",
    )
    set_session_cookie(response, cookie, secure=ctx.services.settings.cookie_secure)
    return response


@router.post("/settings/api-keys")
async def create_api_key(request: Request, ctx: Tenant, form: Form) -> Response:
    scopes = [s for s in api_keys.SCOPES if form.get(f"scope_{s}")]
    try:
        key, secret = await api_keys.create_api_key(ctx.db, ctx.tenant.id, str(form.get("name") or ""), scopes)
    except InputError as exc:
        return await _settings_page(request, ctx, status_code=422, error=f"API key {exc.field}: {exc.reason}")
    return await _settings_page(request, ctx, created_key=secret,
                                notice=f"API key {key.name!r} created. Copy it now: it is shown only once.")


@router.post("/settings/api-keys/{key_id}/revoke")
async def revoke_api_key(request: Request, key_id: Id, ctx: Tenant, form: Form) -> Response:
    key = await api_keys.revoke_api_key(ctx.db, ctx.tenant.id, key_id)
    if key is None:
        raise NotFound("There is no such API key here.")
    return await _settings_page(request, ctx, notice=f"API key {key.name!r} revoked: it stopped working just now.")
