"""The tracker FastAPI application: wiring of settings, Postgres pool, Redis, ingest writer and routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from iot import __version__, http_headers, http_limits
from iot.db import create_pool
from iot.settings import TrackerSettings
from iot.tracker import errors
from iot.tracker.auth import DeviceTokenCache
from iot.tracker.ingest import MetricWriter
from iot.tracker.rate_limit import PointBudget
from iot.tracker.routes import ROUTERS

DESCRIPTION = """
Tenant API (`Authorization: Bearer <api_key>`): devices, incidents, webhooks. API keys are scoped: `read`
for GET and HEAD, `write` for every other method (403 without it); changes are kept in `/v1/audit-log`.
Device ingest (`Authorization: Bearer <device token>`): metrics and heartbeats.
Tenant creation (`Authorization: Bearer <ADMIN_TOKEN>`).

Errors: `{"detail": "...", "errors": [{"field": "devices[3].target", "reason": "..."}]}`.

Limits: request bodies up to MAX_REQUEST_BODY_BYTES (413), arriving within REQUEST_BODY_TIMEOUT_SECONDS
(408); per-tenant quotas on devices, checks per second and metric points per second (429 with Retry-After).
"""


def create_app(settings: TrackerSettings | None = None) -> FastAPI:
    settings = settings or TrackerSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url.get_secret_value(), min_size=2, max_size=20)
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        writer = MetricWriter(pool)
        writer.start()
        app.state.pool, app.state.redis, app.state.writer = pool, redis, writer
        app.state.device_tokens = DeviceTokenCache(pool)
        app.state.point_budget = PointBudget(redis)
        try:
            yield
        finally:
            await writer.stop()
            await redis.aclose()
            await pool.close()

    app = FastAPI(title="my-iot-app tracker", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.egress = settings.egress_policy()  # what device targets and webhook URLs may reach
    errors.install(app)
    http_limits.install(app, max_bytes=settings.max_request_body_bytes,
                        timeout_seconds=settings.request_body_timeout_seconds, respond=errors.body_refused)
    # Every API answer may carry a key, a token or a webhook secret: never cached.
    http_headers.install(app, no_store=lambda path: True)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/health", tags=["health"])
    async def health(request: Request) -> JSONResponse:
        """200 when Postgres and Redis answer, 503 naming the one that does not."""
        checks = {"postgres": _check(request.app.state.pool.fetchval("SELECT 1")),
                  "redis": _check(request.app.state.redis.ping())}
        results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
        ok = all(v == "ok" for v in results.values())
        body = {"status": "ok" if ok else "unavailable", "version": __version__, **results}
        return JSONResponse(body, status_code=200 if ok else 503)

    return app


async def _check(awaitable) -> str:
    try:
        await asyncio.wait_for(awaitable, timeout=2.0)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"error: {type(exc).__name__}"
