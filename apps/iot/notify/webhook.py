"""The webhook channel: signed POSTs of the event JSON that a receiver cannot turn against the worker.

Used for the tenant's own webhook (tenants.webhook_url, outbox rows without a channel) and for channels of
kind "webhook" (URL and secret sealed in the channel).

- Egress: https URLs go only to addresses the egress policy allows, plain http only to allow-listed ones
  (an `EgressResolver` per scheme; IP-literal URLs are judged before the request, since they skip resolvers).
- Memory: the answer's status line and headers are all we use (aiohttp caps their size and count); the body
  is never read, and the connection is closed after the headers, whatever the receiver sends.
- Errors are fixed texts (`iot.failures`): nothing the receiver sends reaches the tenant.
- Signature: `X-IoT-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, computed per attempt,
  one `v1` per valid secret (two during a rotation). Receivers reject stale `t` (docs/api.md: 5 minutes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets as secrets_module
import time
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from iot import failures
from iot.egress import EgressPolicy, EgressResolver
from iot.inputs import MAX_SECRET, MIN_SECRET, Url
from iot.notify.base import Channel, Event, Outcome, SendContext
from iot.sealed import masked

SIGNATURE_HEADER = "X-IoT-Signature"
EVENT_HEADER = "X-IoT-Event"
EVENT_ID_HEADER = "X-IoT-Event-Id"
# What receivers are told to accept (docs/api.md); documented here because the signature format defines it.
TOLERANCE_S = 300


def signature(secrets: Sequence[str], body: bytes, timestamp: int) -> str:
    """`t=<timestamp>,v1=<hex>[,v1=<hex>]`: one HMAC-SHA256 of `<timestamp>.<body>` per secret."""
    signed = str(timestamp).encode() + b"." + body
    return f"t={timestamp}," + ",".join(
        "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets
    )


class WebhookClient:
    """POSTs events; `async with WebhookClient(policy, timeout_s) as client: await client.post(...)`."""

    def __init__(self, egress: EgressPolicy, timeout_s: float) -> None:
        self._egress = egress
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def __aenter__(self) -> WebhookClient:
        for scheme, allow_listed_only in (("https", False), ("http", True)):
            connector = aiohttp.TCPConnector(
                resolver=EgressResolver(self._egress, allow_listed_only=allow_listed_only),
                force_close=True,  # a connection never outlives its answer's headers
                limit=0,  # the sender bounds deliveries in flight
            )
            self._sessions[scheme] = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": "my-iot-app-webhooks"}, auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
            )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def post(self, url: str, event_type: str, event_id: str, body: bytes,
                   secrets: Sequence[str]) -> tuple[int | None, str | None]:
        """(status code, error text): error None on a 2xx answer."""
        parts = urlsplit(url)
        session = self._sessions.get(parts.scheme)
        if session is None or not parts.hostname:
            return None, "invalid URL"
        headers = {"Content-Type": "application/json", EVENT_HEADER: event_type, EVENT_ID_HEADER: event_id,
                   SIGNATURE_HEADER: signature(secrets, body, int(time.time()))}
        try:
            # IP literals skip the resolver: judge them here (names: the session's EgressResolver)
            self._egress.check_unresolved(parts.hostname, allow_listed_only=parts.scheme == "http")
            async with session.post(url, data=body, headers=headers, timeout=self._timeout,
                                    allow_redirects=False) as resp:
                # Only the status is used; leaving the block closes the connection, body unread.
                if 200 <= resp.status < 300:
                    return resp.status, None
                return resp.status, failures.http_status(resp.status)
        except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
            return None, failures.describe(exc)


def event_body(payload: dict[str, Any]) -> bytes:
    """The POST body: the queued event JSON, compact and with sorted keys (what the signature covers)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url = Field(description="https URL that receives the signed event JSON (POST).")
    secret: str = Field(default_factory=lambda: "whsec_" + secrets_module.token_urlsafe(24),
                        min_length=MIN_SECRET, max_length=MAX_SECRET,
                        description="HMAC-SHA256 signing secret; generated when omitted.")


class WebhookChannel(Channel):
    kind: ClassVar[str] = "webhook"
    label: ClassVar[str] = "Webhook (signed JSON POST)"
    example: ClassVar[dict[str, Any]] = {"url": "https://example.com/hooks/iot"}
    Config = WebhookConfig

    async def problem(self, config: WebhookConfig, egress: EgressPolicy) -> tuple[str, str] | None:
        from iot.repo.webhooks import webhook_url_problem  # the same rule as the tenant webhook

        why = await webhook_url_problem(config.url, egress)
        return ("config.url", why) if why else None

    def shown(self, config: WebhookConfig) -> dict[str, Any]:
        parts = urlsplit(config.url)
        return {"url": f"{parts.scheme}://{parts.netloc}{'/…' if parts.path.strip('/') else '/'}",
                "secret": masked(config.secret)}

    async def send(self, config: WebhookConfig, event: Event, ctx: SendContext) -> Outcome:
        if ctx.http is None:
            async with WebhookClient(ctx.egress, ctx.timeout_s) as client:
                return await client.post(config.url, event.event_type, event.event_id, event_body(event.payload),
                                         [config.secret])
        return await ctx.http.post(config.url, event.event_type, event.event_id, event_body(event.payload),
                                   [config.secret])
