"""API keys (many per tenant, named, scoped, revocable, shown once) and the audit log of the tenant API.

Another tenant's key id answers 404, like a missing one. A key can only create, rotate or revoke keys with
scopes it has itself, so a leaked narrow key cannot mint a wider one, take over one by rotating it (the answer
holds the new secret) or cut off one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from iot import repo
from iot.inputs import Id
from iot.repo import api_keys, audit
from iot.repo.api_keys import Principal
from iot.tracker.auth import AuthenticateFirst, PrincipalAuth, TenantAuth
from iot.tracker.schemas import ErrorOut
from iot.tracker.schemas.accounts import (
    ApiKeyCreatedOut,
    ApiKeyIn,
    ApiKeyInfoOut,
    ApiKeyPageOut,
    AuditEntryOut,
    AuditPageOut,
)

router = APIRouter(prefix="/v1", route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 403, 408, 413, 422)})


def _not_found(key_id: int) -> HTTPException:
    return HTTPException(404, detail=f"no such API key: {key_id}")


async def _target_within_scopes(request: Request, who: Principal, key_id: int, action: str) -> None:
    key = await api_keys.get_api_key(request.app.state.pool, who.tenant.id, key_id)
    if key is None:
        raise _not_found(key_id)
    if wider := sorted(set(key.scopes) - who.scopes):
        raise HTTPException(403, detail=f"scopes: API key {key_id} has {', '.join(wider)}, which the key making "
                                        f"this call lacks; a key can only {action} keys with scopes it has itself")


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreatedOut, tags=["api keys"],
             summary="Create an API key")
async def create_api_key(body: ApiKeyIn, who: PrincipalAuth, request: Request) -> ApiKeyCreatedOut:
    """A new named key with the given scopes; the key itself is in this answer only."""
    wider = sorted(set(body.scopes) - who.scopes)
    if wider:
        raise HTTPException(403, detail=f"scopes: the key making this call lacks {', '.join(wider)}; a key can only "
                                        "create keys with scopes it has itself")
    key, secret = await api_keys.create_api_key(request.app.state.pool, who.tenant.id, body.name, body.scopes)
    return ApiKeyCreatedOut(**ApiKeyInfoOut.model_validate(key).model_dump(), key=secret)


@router.get("/api-keys", response_model=ApiKeyPageOut, tags=["api keys"], summary="List API keys")
async def list_api_keys(
    tenant: TenantAuth,
    request: Request,
    before: Annotated[Id | None, Query(description="Keys older than this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=repo.MAX_PAGE)] = 100,
) -> ApiKeyPageOut:
    """Every key of this tenant, revoked ones included, newest first (never the keys themselves)."""
    items = await api_keys.list_api_keys(request.app.state.pool, tenant.id, before_id=before, limit=limit)
    return ApiKeyPageOut(items=[ApiKeyInfoOut.model_validate(k) for k in items],
                         next_before=items[-1].id if len(items) == limit else None)


@router.get("/api-keys/{key_id}", response_model=ApiKeyInfoOut, tags=["api keys"], summary="Get an API key",
            responses={404: {"model": ErrorOut}})
async def get_api_key(key_id: Id, tenant: TenantAuth, request: Request) -> ApiKeyInfoOut:
    key = await api_keys.get_api_key(request.app.state.pool, tenant.id, key_id)
    if key is None:
        raise _not_found(key_id)
    return ApiKeyInfoOut.model_validate(key)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyInfoOut, tags=["api keys"], summary="Revoke an API key",
               responses={404: {"model": ErrorOut}})
async def revoke_api_key(key_id: Id, who: PrincipalAuth, request: Request) -> ApiKeyInfoOut:
    """The key stops working at once (also when it is the key making this call). Revoked keys stay listed."""
    await _target_within_scopes(request, who, key_id, "revoke")
    key = await api_keys.revoke_api_key(request.app.state.pool, who.tenant.id, key_id)
    if key is None:
        raise _not_found(key_id)
    return ApiKeyInfoOut.model_validate(key)


@router.post("/api-keys/{key_id}/rotate", response_model=ApiKeyCreatedOut, tags=["api keys"],
             summary="Rotate an API key", responses={404: {"model": ErrorOut}})
async def rotate_api_key(key_id: Id, who: PrincipalAuth, request: Request) -> ApiKeyCreatedOut:
    """Same name and scopes, a new secret; the old one stops working at once."""
    pool = request.app.state.pool
    await _target_within_scopes(request, who, key_id, "rotate")
    secret = await api_keys.rotate_key(pool, who.tenant.id, key_id)
    key = await api_keys.get_api_key(pool, who.tenant.id, key_id)
    if secret is None or key is None:
        raise _not_found(key_id)
    return ApiKeyCreatedOut(**ApiKeyInfoOut.model_validate(key).model_dump(), key=secret)


@router.get("/audit-log", response_model=AuditPageOut, tags=["audit"], summary="The audit log")
async def audit_log(
    tenant: TenantAuth,
    request: Request,
    before: Annotated[Id | None, Query(description="Entries older than this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=repo.MAX_PAGE)] = 50,
) -> AuditPageOut:
    """Every change made through the API (by key) and the dashboard (by user), newest first."""
    items = await audit.list_entries(request.app.state.pool, tenant.id, before_id=before, limit=limit)
    return AuditPageOut(items=[AuditEntryOut.model_validate(e) for e in items],
                        next_before=items[-1].id if len(items) == limit else None)
