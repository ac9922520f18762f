"""Sign in with the tenant's API key; sign out."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from iot.dashboard.context import Form, TenantAnonymous
from iot.dashboard.session import COOKIE_NAME, MAX_AGE_SECONDS
from iot.repo import tenants
from iot.tokens import token_hash

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Only same-site paths: `//evil.example` or `https://...` would turn sign-in into an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/signin")
async def signin_page(request: Request, ctx: TenantAnonymous, next: str = "/") -> Response:
    return ctx.render(request, "signin.html", next=safe_next(next), error=None)


@router.post("/signin")
async def signin(request: Request, ctx: TenantAnonymous) -> Response:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        # Login CSRF: a foreign page must not sign the browser into an attacker's tenant.
        return ctx.render(request, "signin.html", status_code=403, next="/",
                          error="This sign-in form was submitted from another site.")
    form = await request.form()
    api_key = str(form.get("api_key") or "").strip()
    next_path = safe_next(str(form.get("next") or "/"))
    tenant = await tenants.tenant_by_api_key(ctx.db, api_key) if api_key else None
    if tenant is None or tenant.id != ctx.tenant.id:
        return ctx.render(request, "signin.html", status_code=401, next=next_path,
                          error=f"That is not an API key of {ctx.tenant.slug}. Paste the key you got when the "
                                "tenant was created (or after the last rotation).")
    session, cookie = ctx.services.sessions.new(tenant.id, tenant.slug, token_hash(api_key))
    await ctx.services.session_store.open(session)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, cookie, secure=ctx.services.settings.cookie_secure)
    return response


@router.post("/signout")
async def signout(ctx: TenantAnonymous, form: Form) -> Response:
    if ctx.session is not None:
        await ctx.services.session_store.close(ctx.session)  # ends it on the server, for copies of the cookie too
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax")
    return response


def set_session_cookie(response: Response, value: str, *, secure: bool) -> None:
    # No Domain attribute: a host-only cookie, never sent to another tenant's subdomain.
    response.set_cookie(COOKIE_NAME, value, max_age=MAX_AGE_SECONDS, path="/", httponly=True,
                        samesite="lax", secure=secure)
