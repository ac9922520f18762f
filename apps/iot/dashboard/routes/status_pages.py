"""Status pages: the tenant's management page (list, add, edit, delete) and the public page itself,
`GET /status/<slug>` on the tenant's host, without sign-in.

The public page is the same HTML for every visitor: rendered from `iot.status_pages.public_view`, kept in
Redis for CACHE_SECONDS, served with `Cache-Control: public, max-age=CACHE_SECONDS` and an ETag (a
conditional request answers 304). Its own CSP lets the tenant's https logo load; nothing else is loosened.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from iot import status_pages
from iot.dashboard.context import Form, NotFound, Services, Tenant, TenantRequest, require_role, services
from iot.dashboard.routes.history import _duration as duration
from iot.dashboard.routes.history import bar_level
from iot.dashboard.tenancy import tenant_slug_from_host
from iot.errors import Conflict, InputError
from iot.inputs import Id, ascii_int
from iot.repo import status_pages as repo
from iot.repo import tags, tenants
from iot.repo.status_pages import PageSpec, StatusPage
from iot.uptime import Uptime

router = APIRouter()
# Publishing tells the world about devices: changing pages is for admins (reading them for every role).
ADMIN_ONLY = [Depends(require_role("admin"))]

PUBLIC_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
              "frame-ancestors 'none'; form-action 'none'; base-uri 'none'")
PUBLIC_CACHE = f"public, max-age={status_pages.CACHE_SECONDS}"
_SEPARATORS = re.compile(r"[\s,;]+")


# --- the public page -----------------------------------------------------------------------------------


def _day_title(day: Uptime) -> str:
    """A bar's tooltip, short (a page of 500 components has 45,000 of them): what was not up is named."""
    if day.percent is None:
        return f"{day.start:%Y-%m-%d}: no data"
    text = f"{day.start:%Y-%m-%d}: {day.percent:.2f} % up"
    if day.down_seconds:
        text += f", {duration(day.down_seconds)} down"
    if day.excluded_seconds:
        text += f", {duration(day.excluded_seconds)} maintenance"
    return text


def _component(c: status_pages.Component) -> dict[str, object]:
    percent = c.uptime.percent
    return {"name": c.name, "state": c.state, "label": c.label,
            "percent": None if percent is None else f"{percent:.2f}",
            "bars": [(bar_level(d, None), _day_title(d)) for d in c.days]}


async def _render_public(svc: Services, tenant_id: int, slug: str) -> bytes | None:
    view = await status_pages.public_view(svc.db, tenant_id, slug)
    if view is None:
        return None
    template = svc.templates.env.get_template("status_public.html")

    def draw() -> bytes:
        html = template.render(view=view, page=view.page, overall=view.overall,
                               components=[_component(c) for c in view.components])
        # Kept and sent compressed: 90 bars per component repeat the same markup (500 components: ~3 MB).
        return gzip.compress(html.encode(), compresslevel=6, mtime=0)

    # A thread: drawing 45,000 bars and compressing them would hold the event loop for other requests.
    return await asyncio.to_thread(draw)


def _page_cache(request: Request, svc: Services) -> status_pages.PageCache:
    """One cache per app (it keeps its background refreshes), made on first use."""
    cache = getattr(request.app.state, "status_page_cache", None)
    if cache is None or cache.redis is not svc.redis:
        cache = status_pages.PageCache(svc.redis, lambda tenant_id, slug: _render_public(svc, tenant_id, slug))
        request.app.state.status_page_cache = cache
    return cache


@router.get("/status/{slug}", summary="Public status page")
async def public_status_page(request: Request, slug: str, svc: Annotated[Services, Depends(services)]) -> Response:
    settings = svc.settings
    tenant_slug = tenant_slug_from_host(request.headers.get("host"), settings.domain, settings.monitor_name_set())
    missing = NotFound("There is no such status page here.", home=settings.marketing_link())
    found = await tenants.tenant_by_slug(svc.db, tenant_slug) if tenant_slug else None
    if found is None or repo.slug_problem(slug):
        raise missing
    tenant = found.id
    body = await _page_cache(request, svc).get(tenant, slug)
    if body is None:
        raise missing
    etag = "W/" + status_pages.etag_of(body)  # weak: the same page, gzip or not
    headers = {"Cache-Control": PUBLIC_CACHE, "ETag": etag, "Content-Security-Policy": PUBLIC_CSP,
               "Vary": "Accept-Encoding"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
    else:
        body = gzip.decompress(body)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


# --- the management page -------------------------------------------------------------------------------


def _ids(text: str) -> list[int]:
    ids = []
    for i, part in enumerate(p for p in _SEPARATORS.split(text) if p):
        value = ascii_int(part)
        if value is None:
            raise InputError(f"device_ids[{i}]", f"{part[:30]!r} is not a device id; separate ids with commas")
        ids.append(value)
    return ids


def spec_from_form(form: dict) -> PageSpec:
    """The page a submitted form describes (InputError names the form field)."""
    text = {name: str(form.get(name) or "") for name in (
        "slug", "title", "description", "logo_url", "custom_domain", "device_ids", "tags")}
    return PageSpec(text["slug"], text["title"], text["description"], text["logo_url"] or None,
                    text["custom_domain"] or None, _ids(text["device_ids"]),
                    [t for t in re.split(r"[\s,;]+", text["tags"]) if t], form.get("published") == "on")


def _form_of(page: StatusPage) -> dict[str, str]:
    return {"slug": page.slug, "title": page.title, "description": page.description, "logo_url": page.logo_url or "",
            "custom_domain": page.custom_domain or "", "device_ids": ", ".join(map(str, page.device_ids)),
            "tags": ", ".join(page.tags), "published": "on" if page.published else ""}


async def _page(request: Request, ctx: TenantRequest, status_code: int = 200, **values: object) -> Response:
    pages = await repo.list_pages(ctx.db, ctx.tenant.id, limit=repo.MAX_PAGES)
    known = [t.tag for t in await tags.tag_counts(ctx.db, ctx.tenant.id, 50)]
    values = {"error": None, "notice": None, "editing": None, "form": {}, **values}
    return ctx.render(request, "status_pages.html", status_code=status_code, page="status_pages", pages=pages,
                      known_tags=known, **values)


async def _own(ctx: TenantRequest, page_id: int) -> StatusPage:
    page = await repo.get_page(ctx.db, ctx.tenant.id, page_id)
    if page is None:
        raise NotFound(f"There is no status page {page_id} in {ctx.tenant.slug}.", home="/status-pages")
    return page


@router.get("/status-pages")
async def status_pages_page(request: Request, ctx: Tenant) -> Response:
    return await _page(request, ctx)


@router.post("/status-pages", dependencies=ADMIN_ONLY)
async def create_status_page(request: Request, ctx: Tenant, form: Form) -> Response:
    try:
        page = await repo.create_page(ctx.db, ctx.tenant.id, spec_from_form(form))
    except InputError as exc:
        return await _page(request, ctx, 409 if isinstance(exc, Conflict) else 422, form=form,
                           error=f"{exc.field}: {exc.reason}")
    await status_pages.forget(ctx.services.redis, ctx.tenant.id, page.slug)
    return RedirectResponse(f"/status-pages/{page.id}?saved=1", status_code=303)


@router.get("/status-pages/{page_id}")
async def edit_status_page(request: Request, ctx: Tenant, page_id: Id) -> Response:
    page = await _own(ctx, page_id)
    notice = None
    if request.query_params.get("saved"):
        notice = f"Saved. {'It is public at /status/' + page.slug if page.published else 'It is not published yet.'}"
    return await _page(request, ctx, editing=page, form=_form_of(page), notice=notice)


@router.post("/status-pages/{page_id}", dependencies=ADMIN_ONLY)
async def update_status_page(request: Request, ctx: Tenant, form: Form, page_id: Id) -> Response:
    page = await _own(ctx, page_id)
    try:
        changed = await repo.update_page(ctx.db, ctx.tenant.id, page_id, spec_from_form(form))
    except InputError as exc:
        return await _page(request, ctx, 409 if isinstance(exc, Conflict) else 422, editing=page,
                           form=form, error=f"{exc.field}: {exc.reason}")
    if changed is None:
        raise NotFound(f"There is no status page {page_id} in {ctx.tenant.slug}.", home="/status-pages")
    before, after = changed
    await status_pages.forget(ctx.services.redis, ctx.tenant.id, before.slug, after.slug)
    return RedirectResponse(f"/status-pages/{page_id}?saved=1", status_code=303)


@router.post("/status-pages/{page_id}/delete", dependencies=ADMIN_ONLY)
async def delete_status_page(ctx: Tenant, form: Form, page_id: Id) -> Response:
    page = await repo.delete_page(ctx.db, ctx.tenant.id, page_id)
    if page is None:
        raise NotFound(f"There is no status page {page_id} in {ctx.tenant.slug}.", home="/status-pages")
    await status_pages.forget(ctx.services.redis, ctx.tenant.id, page.slug)
    return RedirectResponse("/status-pages", status_code=303)
