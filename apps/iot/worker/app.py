"""The worker's HTTP endpoints: GET /health and GET /status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from iot import __version__


def build_app(status: Callable[[], Any]) -> web.Application:
    """`status` is an async callable returning the /status document (see worker.main.WorkerService)."""

    async def health(_request: web.Request) -> web.Response:
        doc = await status()
        return web.json_response({"status": "ok", "version": __version__, "leader": doc["leader"],
                                  "instance": doc["instance"]})

    async def status_view(_request: web.Request) -> web.Response:
        return web.json_response(await status())

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/status", status_view)
    return app
