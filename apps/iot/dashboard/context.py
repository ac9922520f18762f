"""Per-request context: the tenant from the Host header, the session from the cookie, CSRF checks.

Handlers depend on `signed_in` (pages and fragments of a tenant) or `tenant_only` (sign-in page).
Roles are enforced here too, default-deny by method so new routes are covered without edits: GET and
HEAD need a viewer, every other method a member; `require_role` raises the bar for a router or a route
(admin pages). A session opened with the API key (before the tenant has an owner) acts as the owner until
the owner account is created, then it ends.
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
from iot.dashboard.session import (
    COOKIE_NAME,
    Session,
    SessionCodec,
    csrf_matches,
    key_fingerprint,
    user_epoch,
)
from iot.dashboard.session_store import SessionStore
from iot.dashboard.tenancy import tenant_slug_from_host
from iot.repo import tenants, users
from iot.settings import DashboardSettings

READ_METHODS = frozenset({"GET", "HEAD"})


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
    user: users.User | None = None

    @property
    def role(self) -> str | None:
        """The signed-in role: the user's, or owner for the API-key session of a tenant without users."""
        if self.session is None:
            return None
        return self.user.role if self.user is not None else "owner"

    def at_least(self, role: str) -> bool:
        return self.role is not None and users.RANK[self.role] >= users.RANK[role]

    @property
    def actor_name(self) -> str:
        return self.user.email if self.user is not None else "API key sign-in"

    @property
    def db(self) -> asyncpg.Pool:
        return self.services.db

    def render(self, request: Request, template: str, status_code: int = 200, **values: Any):
        return self.services.templates.TemplateResponse(
            request, template, {"tenant": self.tenant, "session": self.session, "user": self.user,
                                "role": self.role, **values}, status_code=status_code
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
    user = None
    if session is not None and session.user_id is not None:
        user = await users.user_by_id(svc.db, tenant.id, session.user_id)
        if user is None or user_epoch(user.session_epoch) != session.key_fingerprint:
            session = None  # the user was removed, or changed or reset the password since: sign in again
    elif session is not None:
        current = await queries.api_key_hash(svc.db, tenant.id)
        if current is None or key_fingerprint(current) != session.key_fingerprint:
            session = None  # opened with an API key that has been rotated since: sign in again
        elif await users.has_users(svc.db, tenant.id):
            session = None  # the owner exists now: people sign in with their email and password
    if session is not None and not await svc.session_store.is_open(session):
        session = None  # signed out (this cookie may be a copy kept after sign-out)
    if session is None:
        user = None
    ctx = TenantRequest(svc, tenant, session, user)
    request.state.dashboard_actor = ctx  # for the audit log (app.py), once the change has been made
    return ctx


async def any_role(ctx: Annotated[TenantRequest, Depends(tenant_only)]) -> TenantRequest:
    """Signed in, whatever the role: only for a user's own account (password, second factor)."""
    if ctx.session is None:
        raise SignInRequired()
    return ctx


async def signed_in(request: Request, ctx: Annotated[TenantRequest, Depends(any_role)]) -> TenantRequest:
    if request.method.upper() not in READ_METHODS and not ctx.at_least("member"):
        raise Forbidden(f"Your role ({ctx.role}) can look but not change anything here. Ask an admin of "
                        f"{ctx.tenant.slug} for the member role.")
    return ctx


def require_role(role: str, *, writes_only: bool = False):
    """A dependency: the signed-in user needs `role` or above (for every method, or only for changes)."""

    async def check(request: Request, ctx: Annotated[TenantRequest, Depends(signed_in)]) -> TenantRequest:
        if writes_only and request.method.upper() in READ_METHODS:
            return ctx
        if not ctx.at_least(role):
            raise Forbidden(f"This needs the {role} role or above; yours is {ctx.role}. Ask the owner of "
                            f"{ctx.tenant.slug}.")
        return ctx

    return check


async def _csrf_checked(request: Request, ctx: TenantRequest) -> dict[str, Any]:
    form = await request.form()
    submitted = request.headers.get("x-csrf-token") or form.get("csrf")
    if ctx.session is None or not csrf_matches(ctx.session, submitted if isinstance(submitted, str) else None):
        raise Forbidden("The form expired or did not come from this dashboard. Reload the page and try again.")
    return dict(form)


async def checked_form(request: Request, ctx: Annotated[TenantRequest, Depends(signed_in)]) -> dict[str, Any]:
    """The submitted form of a state-changing request, after the role and CSRF token checks."""
    return await _csrf_checked(request, ctx)


async def own_account_form(request: Request, ctx: Annotated[TenantRequest, Depends(any_role)]) -> dict[str, Any]:
    """The form of a change to one's own account (any role), after the CSRF token check."""
    return await _csrf_checked(request, ctx)


Tenant = Annotated[TenantRequest, Depends(signed_in)]
Admin = Annotated[TenantRequest, Depends(require_role("admin"))]
TenantAnonymous = Annotated[TenantRequest, Depends(tenant_only)]
Form = Annotated[dict[str, Any], Depends(checked_form)]
AnyRole = Annotated[TenantRequest, Depends(any_role)]
OwnAccountForm = Annotated[dict[str, Any], Depends(own_account_form)]
