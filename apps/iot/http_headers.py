"""Response headers every HTTP app sends: HSTS, and `Cache-Control: no-store` where answers carry secrets.

- `Strict-Transport-Security`: browsers that reached us over HTTPS once never fall back to plain HTTP
  (they ignore the header on plain-HTTP answers, so the playground on http://*.localhost is unaffected).
- `Cache-Control: no-store` on every path `no_store(path)` selects (API keys, device tokens, webhook
  secrets and tenant data must not stay in a browser's or a proxy's cache), unless the route set its own.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, no_store: Callable[[str], bool]) -> None:
        self.app = app
        self.no_store = no_store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = self.no_store(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Strict-Transport-Security", HSTS)
                if no_store:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app, *, no_store: Callable[[str], bool]) -> None:
    app.add_middleware(SecurityHeadersMiddleware, no_store=no_store)
