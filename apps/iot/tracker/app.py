"""The tracker FastAPI application: wiring of settings, Postgres pool, Redis, ingest writer and routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from iot import __version__
from iot.db import create_pool
from iot.settings import TrackerSettings
from iot.tracker import errors, routes_devices, routes_ingest, routes_tenants
from iot.tracker.auth import DeviceTokenCache
from iot.tracker.ingest import MetricWriter

DESCRIPTION = """
Tenant API (`Authorization: Bearer <api_key>`): devices, incidents, webhooks.
Device ingest (`Authorization: Bearer <device token>`): metrics and heartbeats.
Tenant creation (`Authorization: Bearer <ADMIN_TOKEN>`).

Errors: `{"detail": "...", "errors": [{"field": "devices[3].target", "reason": "..."}]}`.
"""


def create_app(settings: TrackerSettings | None = None) -> FastAPI:
    settings = settings or TrackerSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url.get_secret_value(), min_size=2, max_size=20)
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        writer = MetricWriter(pool, redis)
        writer.start()
        app.state.pool, app.state.redis, app.state.writer = pool, redis, writer
        app.state.device_tokens = DeviceTokenCache(pool)
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
    app.include_router(routes_tenants.router)
    app.include_router(routes_devices.router)
    app.include_router(routes_ingest.router)

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
