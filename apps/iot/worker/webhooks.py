"""Deliver queued webhook events (table webhook_deliveries) to tenants, at least once.

Every worker process runs a sender (leader or standby): rows are claimed with FOR UPDATE SKIP LOCKED,
so senders never deliver the same row concurrently, and evaluation never waits for a receiver.

Request: POST <tenant webhook_url>, body = the event JSON, headers
  Content-Type: application/json
  X-IoT-Event: device.state_changed
  X-IoT-Event-Id: <event id>              (idempotency key: the same event may arrive more than once)
  X-IoT-Signature: sha256=<hex HMAC-SHA256 of the raw body under the tenant's webhook secret>
A 2xx answer marks the event delivered; anything else is retried with exponential backoff
(base * 2^attempts, capped) until `max_attempts`, then marked failed. History: GET /v1/webhook/deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from typing import Any

import aiohttp
import asyncpg

from iot.log import log_fields

logger = logging.getLogger(__name__)

CLAIM_DUE = """
SELECT w.id, w.event_id, w.event_type, w.payload, w.attempts, t.webhook_url, t.webhook_secret
FROM webhook_deliveries w JOIN tenants t ON t.id = w.tenant_id
WHERE w.status = 'pending' AND w.next_attempt_at <= now()
ORDER BY w.next_attempt_at
LIMIT $1
FOR UPDATE OF w SKIP LOCKED
"""
MARK_DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = now(),
    last_status_code = $2, last_error = NULL
WHERE id = $1
"""
MARK_RETRY = """
UPDATE webhook_deliveries SET attempts = attempts + 1, last_status_code = $2, last_error = $3,
    status = CASE WHEN attempts + 1 >= $4 THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => $5)
WHERE id = $1
"""

SIGNATURE_HEADER = "X-IoT-Signature"


def sign(secret: str, body: bytes) -> str:
    """Value of the X-IoT-Signature header (receivers compare it with hmac.compare_digest)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    return min(cap, base * (2 ** attempts))


class WebhookSender:
    def __init__(self, pool: asyncpg.Pool, *, batch: int = 50, timeout_s: float = 10.0, max_attempts: int = 20,
                 backoff_base_s: float = 5.0, backoff_cap_s: float = 3600.0, idle_poll_s: float = 1.0) -> None:
        self._pool = pool
        self._batch = batch
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_attempts = max_attempts
        self._base = backoff_base_s
        self._cap = backoff_cap_s
        self._idle = idle_poll_s
        self.delivered = 0

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        async with aiohttp.ClientSession(headers={"User-Agent": "my-iot-app-webhooks"}) as session:
            while not stop.is_set():
                try:
                    sent = await self.deliver_due(session)
                    delay = 0.5
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log_fields(logger, logging.WARNING, "webhook queue unavailable, retrying", error=str(exc))
                    sent = 0
                    await _wait(stop, delay)
                    delay = min(delay * 2, 10.0)
                    continue
                if sent == 0:
                    await _wait(stop, self._idle)

    async def deliver_due(self, session: aiohttp.ClientSession) -> int:
        """Claim due events, POST them concurrently, record the outcomes; returns how many were tried."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_DUE, self._batch)
            if not rows:
                return 0
            outcomes = await asyncio.gather(*(self._post(session, row) for row in rows))
            for row, (status, error) in zip(rows, outcomes, strict=True):
                if error is None:
                    await conn.execute(MARK_DELIVERED, row["id"], status)
                    self.delivered += 1
                else:
                    wait = backoff_seconds(row["attempts"], self._base, self._cap)
                    await conn.execute(MARK_RETRY, row["id"], status, error, self._max_attempts, wait)
                    log_fields(logger, logging.INFO, "webhook delivery failed, will retry",
                               event_id=row["event_id"], status=status, error=error, retry_in_s=wait)
        return len(rows)

    async def _post(self, session: aiohttp.ClientSession, row: Any) -> tuple[int | None, str | None]:
        if not row["webhook_url"]:
            return None, "tenant has no webhook URL any more"
        body = json.dumps(row["payload"], separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-IoT-Event": row["event_type"],
                   "X-IoT-Event-Id": row["event_id"], SIGNATURE_HEADER: sign(row["webhook_secret"] or "", body)}
        try:
            async with session.post(row["webhook_url"], data=body, headers=headers, timeout=self._timeout,
                                    allow_redirects=False) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return resp.status, None
                return resp.status, f"HTTP {resp.status}"
        except TimeoutError:
            return None, "timeout"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
