"""Request body limits of the HTTP apps (tracker, dashboard), enforced before routing and before parsing.

- A declared `Content-Length` above the limit is answered 413 at once: the body is never read.
- A streamed (chunked) body is counted as it arrives and cut off with 413 as soon as it passes the limit.
- The whole body must arrive within the read timeout, counted from the start of the request: a client that
  sends slowly or stalls half-way gets 408 instead of holding a connection and a buffer forever.

Traefik's buffering middleware enforces the same limit in front (jobs/*.nomad.hcl, docker-compose.yml); this
one holds wherever the app is reached directly. Both errors are HTTPExceptions so that FastAPI's body
reading passes them on; `install` renders them, here and in the app, with the app's own error shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Responder = Callable[[int, str], Response]


class BodyRefused(HTTPException):
    """The request body was refused before the app parsed it (413 too large, 408 too slow)."""


def _too_large(limit: int) -> BodyRefused:
    return BodyRefused(413, f"the request body may be at most {limit} bytes ({limit / 2**20:g} MiB); send less per "
                            "request (split it)")


def _too_slow(seconds: float) -> BodyRefused:
    return BodyRefused(408, f"the request body did not arrive within {seconds:g} s; send it again at once")


class BodyLimitMiddleware:
    """Pure ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_seconds: float, respond: Responder) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(_too_large(self.max_bytes), scope, receive, send)
            return

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        received = 0
        complete = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # after the body: e.g. waiting for the client to disconnect
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _too_slow(self.timeout_seconds) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyRefused as refused:
            if started:
                raise
            await self._refuse(refused, scope, receive, send)

    async def _refuse(self, refused: BodyRefused, scope: Scope, receive: Receive, send: Send) -> None:
        response = self.respond(refused.status_code, str(refused.detail))
        # The rest of the body is not wanted: close instead of reading it to reuse the connection.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def install(app, *, max_bytes: int, timeout_seconds: float, respond: Responder) -> None:
    """Add the middleware to a Starlette/FastAPI app and render refusals raised inside routes the same way."""

    async def on_refused(_request: Request, exc: BodyRefused) -> Response:
        response = respond(exc.status_code, str(exc.detail))
        response.headers["Connection"] = "close"
        return response

    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes, timeout_seconds=timeout_seconds, respond=respond)
    app.add_exception_handler(BodyRefused, on_refused)
