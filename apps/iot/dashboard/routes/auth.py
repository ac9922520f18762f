"""Sign in (email + password, and the TOTP code when enabled; the tenant's API key only until the tenant
has an owner), sign out."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import pyotp
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pyotp.exceptions import OTPVerificationError

from iot.dashboard.context import Forbidden, TenantAnonymous, TenantRequest, tenant_only
from iot.dashboard.session import COOKIE_NAME, MAX_AGE_SECONDS, csrf_matches
from iot.dashboard.throttle import SignInThrottle
from iot.repo import audit, tenants, users
from iot.sealed import SealError
from iot.tokens import token_hash

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Only same-site paths: `//evil.example` or `https://...` would turn sign-in into an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def client_address(request: Request) -> str | None:
    """The client's address; uvicorn runs with proxy headers on, so behind the proxy it is the one reported."""
    return request.client.host if request.client else None


TOTP_WRONG = "wrong"
TOTP_USED = "used"


async def check_totp(ctx: TenantRequest, user: users.User, code: str) -> str | None:
    """None when `code` is a current code of the user's seed (one step of clock drift either way) not used
    before; else TOTP_WRONG or TOTP_USED. An accepted code's step is claimed: replaying a code seen over a
    shoulder or through a phishing proxy fails, even within the 90 seconds the code is otherwise valid."""
    if not user.totp_sealed:
        return TOTP_WRONG
    try:
        seed = ctx.services.settings.secret_box().open(user.totp_sealed)
    except SealError:
        return TOTP_WRONG
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return TOTP_WRONG
    try:
        step = pyotp.TOTP(seed).verify_and_get_timecode(code, valid_window=1)
    except OTPVerificationError:
        return TOTP_WRONG
    return None if await users.claim_totp_step(ctx.db, user.tenant_id, user.id, step) else TOTP_USED


def _from_other_site(request: Request) -> bool:
    origin = request.headers.get("origin")
    return bool(origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"))


@router.get("/signin", tags=["public"])
async def signin_page(request: Request, ctx: TenantAnonymous, next: str = "/") -> Response:
    has_owner = await users.has_users(ctx.db, ctx.tenant.id)
    return ctx.render(request, "signin.html", next=safe_next(next), error=None, has_owner=has_owner, email="")


@router.post("/signin", tags=["public"])
async def signin(request: Request, ctx: TenantAnonymous) -> Response:
    has_owner = await users.has_users(ctx.db, ctx.tenant.id)

    def refuse(status: int, error: str, email: str = "", **headers: str) -> Response:
        response = ctx.render(request, "signin.html", status_code=status, next=next_path, error=error,
                              has_owner=has_owner, email=email)
        response.headers.update(headers)
        return response

    next_path = "/"
    if _from_other_site(request):
        # Login CSRF: a foreign page must not sign the browser into an attacker's tenant.
        return refuse(403, "This sign-in form was submitted from another site.")
    form = await request.form()
    next_path = safe_next(str(form.get("next") or "/"))
    if "email" not in form:
        return await _signin_with_key(request, ctx, str(form.get("api_key") or "").strip(), next_path, has_owner,
                                      refuse)
    email = str(form.get("email") or "").strip().lower()[:users.MAX_EMAIL]
    password = str(form.get("password") or "")
    wait = await SignInThrottle(ctx.services.redis).attempt(ctx.tenant.id, email, client_address(request) or "")
    if wait:
        return refuse(429, f"Too many sign-in attempts. Wait {wait // 60 + 1} minutes, or reset your password.",
                      email, **{"Retry-After": str(wait)})
    user = await users.user_by_email(ctx.db, ctx.tenant.id, email)
    if not users.password_matches(user, password) or user is None:
        return refuse(401, "Wrong email or password.", email)
    if user.totp_enabled:
        problem = await check_totp(ctx, user, str(form.get("code") or ""))
        if problem == TOTP_USED:
            return refuse(401, "That code was used already. Enter the next code your authenticator app shows.",
                          email)
        if problem:
            return refuse(401, "Enter the current 6-digit code of your authenticator app.", email)
    await SignInThrottle(ctx.services.redis).succeeded(ctx.tenant.id, email)
    await users.touch_signin(ctx.db, ctx.tenant.id, user.id)
    await audit.record(ctx.db, ctx.tenant.id, actor_kind="user", actor_id=user.id, actor_name=user.email,
                       action="dashboard: sign in", ip=client_address(request))
    session, cookie = ctx.services.sessions.for_user(ctx.tenant.id, ctx.tenant.slug, user.id, user.session_epoch)
    return await _open(ctx, session, cookie, next_path)


async def _signin_with_key(request: Request, ctx: TenantRequest, api_key: str, next_path: str, has_owner: bool,
                           refuse) -> Response:
    if has_owner:
        return refuse(401, f"{ctx.tenant.slug} has an owner account now: sign in with your email and password.")
    tenant = await tenants.tenant_by_api_key(ctx.db, api_key) if api_key else None
    if tenant is None or tenant.id != ctx.tenant.id:
        return refuse(401, f"That is not an API key of {ctx.tenant.slug}. Paste the key you got when the "
                           "tenant was created (or after the last rotation).")
    session, cookie = ctx.services.sessions.new(tenant.id, tenant.slug, token_hash(api_key))
    return await _open(ctx, session, cookie, next_path)


async def _open(ctx: TenantRequest, session, cookie: str, next_path: str) -> Response:
    await ctx.services.session_store.open(session)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, cookie, secure=ctx.services.settings.cookie_secure)
    return response


async def _signout_form(request: Request, ctx: Annotated[TenantRequest, Depends(tenant_only)]) -> TenantRequest:
    """Signing out needs only the CSRF token, whatever the role (a viewer may sign out too)."""
    form = await request.form()
    submitted = request.headers.get("x-csrf-token") or form.get("csrf")
    if ctx.session is not None and not csrf_matches(ctx.session, submitted if isinstance(submitted, str) else None):
        raise Forbidden("The form expired or did not come from this dashboard. Reload the page and try again.")
    return ctx


@router.post("/signout", tags=["self-service"])
async def signout(ctx: Annotated[TenantRequest, Depends(_signout_form)]) -> Response:
    if ctx.session is not None:
        await ctx.services.session_store.close(ctx.session)  # ends it on the server, for copies of the cookie too
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax")
    return response


def set_session_cookie(response: Response, value: str, *, secure: bool) -> None:
    # No Domain attribute: a host-only cookie, never sent to another tenant's subdomain.
    response.set_cookie(COOKIE_NAME, value, max_age=MAX_AGE_SECONDS, path="/", httponly=True,
                        samesite="lax", secure=secure)

