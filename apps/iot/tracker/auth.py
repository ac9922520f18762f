"""Bearer authentication: the admin token, tenant API keys and device ingest tokens; API-key scopes.

Scopes are enforced here, by method, so every route (including ones added later) is covered without
edits: GET and HEAD need `read`, every other method needs `write`. Device ingest (metrics, heartbeat)
authenticates with the device's own token, or with a tenant API key that has the `ingest` scope and names
one of its tenant's devices in the `X-Device-Id` header (a gateway relaying for many devices). `ingest` is
only that: it grants no `read` or `write`, and neither of those grants `ingest`.

Every failure is a 401 with `WWW-Authenticate: Bearer`, saying which kind of key the endpoint wants,
never whether some other tenant's key or device exists. Routers use `AuthenticateFirst`, so credentials
are checked before the request body is read: an anonymous client cannot make the tracker read or parse
its body, and one that declares a body but never sends it gets its 401 at once.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Header, HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from iot.errors import InputError
from iot.inputs import INT8_MAX, ascii_int, id_problem
from iot.repo import audit
from iot.repo.api_keys import Principal, principal_by_key
from iot.repo.devices import IngestDevice, device_by_token, ingest_device
from iot.repo.tenants import Tenant
from iot.tokens import TENANT_KEY_PREFIX, token_hash

bearer = HTTPBearer(auto_error=False, description="Tenant API key, device token (or an API key with the `ingest` "
                                                   "scope plus X-Device-Id) or admin token, by endpoint.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

# A rotated or deleted device token keeps working at most this long on an instance that cached it.
DEVICE_TOKEN_CACHE_SECONDS = 10.0


def unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, detail=reason, headers={"WWW-Authenticate": "Bearer"})


def _token(credentials: HTTPAuthorizationCredentials | None, what: str) -> str:
    if credentials is None or not credentials.credentials:
        raise unauthorized(f"missing header 'Authorization: Bearer <{what}>'")
    return credentials.credentials


_MISSING = object()


def _known(request: Request) -> Any:
    """What this request was already authenticated as (by `AuthenticateFirst`), or _MISSING."""
    return getattr(request.state, "authenticated", _MISSING)


def _remember(request: Request, who: Any) -> Any:
    request.state.authenticated = who
    return who


async def require_admin(request: Request, credentials: Credentials) -> None:
    if _known(request) is not _MISSING:
        return
    admin_token = request.app.state.settings.admin_token
    if admin_token is None:
        raise HTTPException(403, detail="tenant creation is disabled on this server: set ADMIN_TOKEN to enable it")
    given = _token(credentials, "ADMIN_TOKEN")
    if not hmac.compare_digest(given.encode(), admin_token.get_secret_value().encode()):
        raise unauthorized("wrong admin token")
    _remember(request, None)


READ_METHODS = frozenset({"GET", "HEAD"})


def needed_scope(method: str) -> str:
    """Default-deny by method: only GET and HEAD are reads; anything else changes something."""
    return "read" if method.upper() in READ_METHODS else "write"


async def current_principal(request: Request, credentials: Credentials) -> Principal:
    if (known := _known(request)) is not _MISSING:
        return known
    api_key = _token(credentials, "tenant API key")
    principal = await principal_by_key(request.app.state.pool, api_key)
    if principal is None:
        raise unauthorized("unknown or revoked tenant API key")
    scope = needed_scope(request.method)
    if scope not in principal.scopes:
        raise HTTPException(403, detail=f"scopes: API key {principal.key_name!r} has scopes "
                                        f"{', '.join(sorted(principal.scopes))}; {request.method} needs the "
                                        f"{scope!r} scope: use a key that has it (POST /v1/api-keys)")
    return _remember(request, principal)


async def current_tenant(principal: Annotated[Principal, Depends(current_principal)]) -> Tenant:
    return principal.tenant


class DeviceTokenCache:
    """token hash -> device, briefly, so ingest does not query Postgres for every request."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = DEVICE_TOKEN_CACHE_SECONDS) -> None:
        self._pool = pool
        self._ttl = ttl
        self._entries: dict[str, tuple[float, IngestDevice]] = {}

    async def lookup(self, token: str) -> IngestDevice | None:
        key = token_hash(token)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit and hit[0] > now:
            return hit[1]
        device = await device_by_token(self._pool, token)
        if device is None:
            self._entries.pop(key, None)
            return None
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[key] = (now + self._ttl, device)
        return device


DEVICE_ID_HEADER = "X-Device-Id"
DEVICE_ID_MAX_DIGITS = len(str(INT8_MAX))


def _device_id(request: Request) -> int:
    raw = request.headers.get(DEVICE_ID_HEADER)
    if raw is None:
        raise InputError(DEVICE_ID_HEADER, "missing: a tenant API key pushes on behalf of a device; name it "
                                           f"with '{DEVICE_ID_HEADER}: <device id>' (or use the device's token)")
    value = ascii_int(raw.strip(), DEVICE_ID_MAX_DIGITS) or 0  # int() of thousands of digits raises: a 500
    if problem := id_problem(value):
        raise InputError(DEVICE_ID_HEADER, problem)
    return value


async def _device_for_key(request: Request, api_key: str) -> IngestDevice:
    """The device a tenant API key with the `ingest` scope pushes for: one of its own tenant's devices."""
    principal = await principal_by_key(request.app.state.pool, api_key)
    if principal is None:
        raise unauthorized("unknown or revoked tenant API key")
    if "ingest" not in principal.scopes:
        raise HTTPException(403, detail=f"scopes: API key {principal.key_name!r} has scopes "
                                        f"{', '.join(sorted(principal.scopes))}; pushing metrics or heartbeats "
                                        "needs the 'ingest' scope: use a key that has it (POST /v1/api-keys) "
                                        "or the device's own token")
    device_id = _device_id(request)
    device = await ingest_device(request.app.state.pool, principal.tenant.id, device_id)
    if device is None:  # another tenant's device reads exactly like a missing one
        raise HTTPException(404, detail=f"no such device: {device_id}")
    return device


# Declared so the OpenAPI shows it; read from `request.headers`, because `AuthenticateFirst` runs the
# authenticator before FastAPI resolves parameters.
DeviceIdHeader = Annotated[str | None, Header(
    alias=DEVICE_ID_HEADER, max_length=DEVICE_ID_MAX_DIGITS,
    description="Only with a tenant API key that has the `ingest` scope: the id of the tenant's device the "
                "push is for (another tenant's or a missing device answers 404). Ignored with a device token.")]


async def current_device(request: Request, credentials: Credentials, device_id: DeviceIdHeader = None) -> IngestDevice:
    """The device a push is for: the device token's own device, or the one an `ingest` API key names.

    A key push returns the same `IngestDevice` a token push does, so everything after authentication
    (validation, limits, per-tenant rate limits and quotas, the writer) is the one code path. It is not
    an audited change: the audit log records changes, and pushes are data."""
    if (known := _known(request)) is not _MISSING:
        return known
    token = _token(credentials, "device token or tenant API key with the ingest scope")
    if token.startswith(TENANT_KEY_PREFIX):
        device = await _device_for_key(request, token)
    else:
        device = await request.app.state.device_tokens.lookup(token)
        if device is None:
            raise unauthorized("unknown or revoked device token")
    if not device.enabled:
        raise HTTPException(403, detail=f"device {device.id} is disabled: it cannot send data; enable it "
                                        f"(PATCH /v1/devices/{device.id} {{\"enabled\": true}}) first")
    return _remember(request, device)


AUTHENTICATORS = (require_admin, current_principal, current_device)


def route_authenticator(dependant: Dependant) -> Callable[..., Awaitable[Any]] | None:
    for dependency in dependant.dependencies:
        if dependency.call in AUTHENTICATORS:
            return dependency.call
        found = route_authenticator(dependency)
        if found is not None:
            return found
    return None


class AuthenticateFirst(APIRoute):
    """A route that checks its bearer credentials before FastAPI reads the body.

    FastAPI reads and parses a body before it resolves dependencies, so without this an anonymous
    64 MiB POST is parsed just to be told 401. The authenticator's result is kept on the request, and
    the dependency returns it without a second lookup.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        authenticate = route_authenticator(self.dependant)
        if authenticate is None:
            return handler

        async def authenticated_handler(request: Request) -> Response:
            who = await authenticate(request, await bearer(request))
            response = await handler(request)
            if isinstance(who, Principal) and request.method not in READ_METHODS and response.status_code < 400:
                await _audit(request, who)
            return response

        return authenticated_handler


async def _audit(request: Request, who: Principal) -> None:
    """One audit row per change an API key made: the route (not the body, which may hold secrets)."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    target = ", ".join(f"{k}={v}" for k, v in request.path_params.items())
    await audit.record(request.app.state.pool, who.tenant.id, actor_kind="api_key", actor_id=who.key_id,
                       actor_name=who.key_name, action=f"{request.method} {path}", target=target,
                       ip=request.client.host if request.client else None)


AdminAuth = Annotated[None, Depends(require_admin)]
TenantAuth = Annotated[Tenant, Depends(current_tenant)]
PrincipalAuth = Annotated[Principal, Depends(current_principal)]
DeviceAuth = Annotated[IngestDevice, Depends(current_device)]
