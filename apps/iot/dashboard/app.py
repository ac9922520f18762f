"""The dashboard ASGI app: lifespan (pool, Redis), static files, routes, error pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from iot import __version__, http_headers, http_limits
from iot.dashboard import check_options
from iot.dashboard.context import READ_METHODS, NotFound, PageError, Services, SignInRequired
from iot.dashboard.routes import ROUTERS
from iot.dashboard.session import SessionCodec
from iot.dashboard.session_store import SessionStore
from iot.dashboard.tenancy import tenant_slug_from_host
from iot.db import create_pool
from iot.errors import REFUSED_BY_DATABASE, refused_by_database
from iot.repo import audit, tenants
from iot.settings import DashboardSettings

PACKAGE = resources.files("iot.dashboard")
# Everything is served by the app itself: no CDN, no inline script, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
    env = templates.env
    env.filters["ago"] = time_ago
    env.filters["ms"] = lambda v: "-" if v is None else f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"
    env.filters["utc"] = lambda t: "-" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    env.globals["version"] = __version__
    env.globals["check_option_fields"] = check_options.FIELDS  # the device forms' per-kind fieldsets
    return templates


def time_ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = int((datetime.now(UTC) - moment).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m ago"
    return f"{seconds // 86400}d ago"


def create_app(settings: DashboardSettings) -> FastAPI:
    templates = _templates()
    templates.env.globals["api_docs_url"] = settings.tracker_public_url.rstrip("/") + "/docs"  # the empty states' link

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await create_pool(settings.database_url.get_secret_value(), min_size=2, max_size=10)
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        app.state.services = Services(settings, db, redis, SessionCodec(settings.session_secret.get_secret_value()),
                                      templates, SessionStore(redis))
        try:
            yield
        finally:
            await db.close()
            await redis.aclose()

    app = FastAPI(title="my-iot-app dashboard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    @app.middleware("http")
    async def security_headers(request: Request, call_next) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.middleware("http")
    async def audit_changes(request: Request, call_next) -> Response:
        # Every change a signed-in user makes, on every route (new ones too): after it succeeded.
        response = await call_next(request)
        ctx = getattr(request.state, "dashboard_actor", None)
        if (request.method not in READ_METHODS and response.status_code < 400 and ctx is not None
                and ctx.session is not None and not getattr(request.state, "audited", False)):
            route = request.scope.get("route")
            target = ", ".join(f"{k}={v}" for k, v in request.scope.get("path_params", {}).items())
            await audit.record(ctx.db, ctx.tenant.id, actor_kind="user",
                               actor_id=ctx.user.id if ctx.user else None, actor_name=ctx.actor_name,
                               action=f"dashboard: {request.method} {getattr(route, 'path', request.url.path)}",
                               target=target, ip=request.client.host if request.client else None)
        return response

    http_limits.install(app, max_bytes=settings.max_request_body_bytes,
                        timeout_seconds=settings.request_body_timeout_seconds, respond=_body_refused)
    # Pages show API keys, device tokens and webhook secrets: never cached (static assets may be).
    http_headers.install(app, no_store=lambda path: not path.startswith("/static/"))
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": "dashboard", "version": __version__}

    for router in ROUTERS:
        app.include_router(router)

    def error_page(request: Request, status_code: int, title: str, message: str, home: str = "/") -> Response:
        return templates.TemplateResponse(request, "error.html", {"title": title, "message": message, "home": home},
                                          status_code=status_code)

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        return error_page(request, exc.status_code, exc.title, exc.message, exc.home)

    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, exc: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            # A polled fragment after the session ended: send the whole page to the sign-in form.
            return Response(status_code=401, headers={"HX-Redirect": "/signin"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?{_next_param(target)}", status_code=303)

    @app.exception_handler(RequestValidationError)
    async def bad_path(request: Request, exc: RequestValidationError) -> Response:
        # e.g. /devices/abc: the same page as for a device that does not exist.
        return await page_error(request, NotFound("There is no such page or device here."))

    async def refused(request: Request, exc: Exception) -> Response:
        problem = refused_by_database(exc)  # type: ignore[arg-type]
        return error_page(request, 422, "Value not accepted", f"{problem.field}: {problem.reason}")

    for refused_class in REFUSED_BY_DATABASE:
        app.add_exception_handler(refused_class, refused)

    @app.exception_handler(RedisError)
    async def session_store_down(request: Request, exc: RedisError) -> Response:
        # Sessions are checked in Redis on every signed-in request; without it nobody can be let in.
        response = error_page(request, 503, "Temporarily unavailable",
                              "The dashboard cannot check sessions right now. Try again in a minute.")
        response.headers["Retry-After"] = "30"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_page(request, 404, "Not found", "There is no such page here.",
                              await _home(request, settings))
        if exc.status_code == 405:
            return error_page(request, 405, "Method not allowed", "This address does not accept that request.")
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    return app


def _body_refused(status: int, reason: str) -> Response:
    return PlainTextResponse(f"{status}: {reason}\n", status_code=status)


async def _home(request: Request, settings: DashboardSettings) -> str:
    """This tenant's start page, or the marketing site on a host that is no tenant's (its "/" is an error too)."""
    slug = tenant_slug_from_host(request.headers.get("host"), settings.domain, settings.monitor_name_set())
    if slug and await tenants.tenant_by_slug(request.app.state.services.db, slug) is not None:
        return "/"
    return settings.marketing_link()


def _next_param(target: str) -> str:
    return urlencode({"next": target})
