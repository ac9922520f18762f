"""Per-request context: the tenant from the Host header, the session from the cookie, CSRF checks.

Handlers depend on `signed_in` (pages and fragments of a tenant) or `tenant_only` (sign-in page).
Failures raise the exceptions below; `app.py` renders them as pages (404, 403) or a redirect to the
sign-in page (htmx requests get an HX-Redirect so a polled fragment does not swap in a login form).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from redis.asyncio import Redis

from iot.dashboard import queries
from iot.dashboard.session import COOKIE_NAME, Session, SessionCodec, csrf_matches, key_fingerprint
from iot.dashboard.session_store import SessionStore
from iot.dashboard.tenancy import tenant_slug_from_host
from iot.repo import tenants
from iot.settings import DashboardSettings


class PageError(Exception):
    status_code = 500
    title = "Something went wrong"

    def __init__(self, message: str, home: str = "/") -> None:
        super().__init__(message)
        self.message = message
        self.home = home  # where the error page's "start page" link leads


class NotFound(PageError):
    status_code = 404
    title = "Not found"


class Forbidden(PageError):
    status_code = 403
    title = "Not allowed"


class SignInRequired(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Services:
    """Everything shared by all requests, created once in the app's lifespan."""

    settings: DashboardSettings
    db: asyncpg.Pool
    redis: Redis
    sessions: SessionCodec
    templates: Jinja2Templates
    session_store: SessionStore


def services(request: Request) -> Services:
    return request.app.state.services


@dataclass(frozen=True, slots=True)
class TenantRequest:
    services: Services
    tenant: tenants.Tenant
    session: Session | None

    @property
    def db(self) -> asyncpg.Pool:
        return self.services.db

    def render(self, request: Request, template: str, status_code: int = 200, **values: Any):
        return self.services.templates.TemplateResponse(
            request, template, {"tenant": self.tenant, "session": self.session, **values}, status_code=status_code
        )


async def tenant_only(request: Request, svc: Annotated[Services, Depends(services)]) -> TenantRequest:
    settings = svc.settings
    host = request.headers.get("host")
    slug = tenant_slug_from_host(host, settings.domain, settings.monitor_name_set())
    apex = settings.marketing_link()  # the product's start page: this host's "/" is the error itself
    if slug is None:
        raise NotFound(f"{host or 'This address'} is not a tenant dashboard. Tenants live at <name>.{settings.domain}.",
                       home=apex)
    tenant = await tenants.tenant_by_slug(svc.db, slug)
    if tenant is None:
        raise NotFound(f"There is no tenant named {slug!r}. Check the address, or ask your administrator for yours.",
                       home=apex)
    session = svc.sessions.decode(request.cookies.get(COOKIE_NAME))
    if session is not None and (session.slug != tenant.slug or session.tenant_id != tenant.id):
        # A cookie minted for another tenant (replayed by hand: browsers keep it on its own host).
        raise Forbidden(f"This session belongs to another tenant, not {tenant.slug!r}. Sign in at this address instead.")
    if session is not None:
        current = await queries.api_key_hash(svc.db, tenant.id)
        if current is None or key_fingerprint(current) != session.key_fingerprint:
            session = None  # opened with an API key that has been rotated since: sign in again
    if session is not None and not await svc.session_store.is_open(session):
        session = None  # signed out (this cookie may be a copy kept after sign-out)
    return TenantRequest(svc, tenant, session)


async def signed_in(ctx: Annotated[TenantRequest, Depends(tenant_only)]) -> TenantRequest:
    if ctx.session is None:
        raise SignInRequired()
    return ctx


async def checked_form(request: Request, ctx: Annotated[TenantRequest, Depends(signed_in)]) -> dict[str, Any]:
    """The submitted form of a state-changing request, after the CSRF token check."""
    form = await request.form()
    submitted = request.headers.get("x-csrf-token") or form.get("csrf")
    if ctx.session is None or not csrf_matches(ctx.session, submitted if isinstance(submitted, str) else None):
        raise Forbidden("The form expired or did not come from this dashboard. Reload the page and try again.")
    return dict(form)


Tenant = Annotated[TenantRequest, Depends(signed_in)]
TenantAnonymous = Annotated[TenantRequest, Depends(tenant_only)]
Form = Annotated[dict[str, Any], Depends(checked_form)]
