"""Public status pages of the tenant API (create, list, get, replace, delete). Another tenant's page id
answers 404, like a missing one. A change drops the page's cached HTML (iot.status_pages), so the public
page shows it on the next request."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from iot import status_pages
from iot.inputs import Id
from iot.repo import status_pages as repo
from iot.repo.status_pages import PageSpec, StatusPage
from iot.repo.tenants import Tenant
from iot.tracker.auth import AuthenticateFirst, TenantAuth
from iot.tracker.schemas import ErrorOut
from iot.tracker.schemas.status_pages import StatusPageIn, StatusPageListOut, StatusPageOut

router = APIRouter(prefix="/v1", tags=["status pages"], route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 408, 413, 422)})


def _not_found(page_id: int) -> HTTPException:
    return HTTPException(404, detail=f"no such status page: {page_id}")


def _spec(body: StatusPageIn) -> PageSpec:
    return PageSpec(body.slug, body.title, body.description, body.logo_url, body.custom_domain, list(body.device_ids),
                    list(body.tags), body.published)


def _out(page: StatusPage, tenant: Tenant, request: Request) -> StatusPageOut:
    url = f"https://{tenant.slug}.{request.app.state.settings.domain}/status/{page.slug}"
    return StatusPageOut.model_validate({**{f: getattr(page, f) for f in StatusPage.__slots__}, "public_url": url})


@router.post("/status-pages", status_code=201, response_model=StatusPageOut, summary="Create a status page",
             responses={409: {"model": ErrorOut}})
async def create_status_page(body: StatusPageIn, tenant: TenantAuth, request: Request) -> StatusPageOut:
    """A public page of chosen devices and tags: current state, 90-day daily uptime, open and recent
    incidents with their notes, maintenance. At most 1,000 components; 409 when the slug is taken."""
    page = await repo.create_page(request.app.state.pool, tenant.id, _spec(body))
    await status_pages.forget(request.app.state.redis, tenant.id, page.slug)
    return _out(page, tenant, request)


@router.get("/status-pages", response_model=StatusPageListOut, summary="List status pages")
async def list_status_pages(tenant: TenantAuth, request: Request) -> StatusPageListOut:
    """All of the tenant's pages, by slug (published or not)."""
    pages = await repo.list_pages(request.app.state.pool, tenant.id, limit=repo.MAX_PAGES)
    return StatusPageListOut(items=[_out(p, tenant, request) for p in pages])


@router.get("/status-pages/{page_id}", response_model=StatusPageOut, responses={404: {"model": ErrorOut}},
            summary="Get a status page")
async def get_status_page(page_id: Id, tenant: TenantAuth, request: Request) -> StatusPageOut:
    page = await repo.get_page(request.app.state.pool, tenant.id, page_id)
    if page is None:
        raise _not_found(page_id)
    return _out(page, tenant, request)


@router.put("/status-pages/{page_id}", response_model=StatusPageOut,
            responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}}, summary="Replace a status page")
async def replace_status_page(page_id: Id, body: StatusPageIn, tenant: TenantAuth, request: Request) -> StatusPageOut:
    """Send the whole page (as for create). The public page shows the change on its next request; a new
    slug frees the old address (it answers 404)."""
    changed = await repo.update_page(request.app.state.pool, tenant.id, page_id, _spec(body))
    if changed is None:
        raise _not_found(page_id)
    before, after = changed
    await status_pages.forget(request.app.state.redis, tenant.id, before.slug, after.slug)
    return _out(after, tenant, request)


@router.delete("/status-pages/{page_id}", status_code=204, responses={404: {"model": ErrorOut}},
               summary="Delete a status page")
async def delete_status_page(page_id: Id, tenant: TenantAuth, request: Request) -> Response:
    """Its public address answers 404 at once."""
    page = await repo.delete_page(request.app.state.pool, tenant.id, page_id)
    if page is None:
        raise _not_found(page_id)
    await status_pages.forget(request.app.state.redis, tenant.id, page.slug)
    return Response(status_code=204)
