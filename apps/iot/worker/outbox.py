"""The outbox sender: deliver queued events (table webhook_deliveries) to tenants' channels, at least once.

Channel-agnostic: a row without `channel_id` goes to the tenant's own webhook (tenants.webhook_url, as
before channels existed); a row with one is sent by the channel's kind (`iot.notify.CHANNELS`) with the
channel's sealed config, opened here just before sending and never logged.

Every worker process runs a sender (leader or standby). A round:
1. claims due rows with FOR UPDATE SKIP LOCKED (senders never deliver the same row concurrently), at most
   `per_tenant` of one tenant, so one tenant's backlog or slow receiver takes a share of a round, not all;
2. counts the attempt and schedules its retry in the same statement, and COMMITS, before any request: a
   worker that dies mid-request (killed, out of memory) has counted it, and its successor waits for the
   backoff instead of retrying (and dying on) the same receiver at once;
3. sends the events concurrently and records each outcome.

The tenant webhook (`iot.notify.webhook`: egress policy, body never read, fixed error texts, `t=,v1=`
signatures fresh per attempt, one per valid secret): POST <tenant webhook_url>, body = the event JSON, headers
  Content-Type: application/json
  X-IoT-Event: device.state_changed | incident.opened
  X-IoT-Event-Id: <event id>              (idempotency key: the same event may arrive more than once)
  X-IoT-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>[,v1=<under the previous secret>]
A 2xx answer marks the event delivered; anything else is retried with exponential backoff
(base * 2^attempts, capped) until `max_attempts`, then marked failed. History: GET /v1/webhook/deliveries
and GET /v1/channels/{id}/deliveries. Other channels: delivered when their kind's `send` reports no error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import asyncpg
from pydantic import ValidationError

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.log import log_fields
from iot.notify import CHANNELS, Event, SendContext
from iot.notify.webhook import WebhookClient, event_body
from iot.sealed import SealError, SecretBox
from iot.settings import SmtpSettings

logger = logging.getLogger(__name__)

# What a row says while its attempt is under way, and forever if the worker dies during it.
INTERRUPTED = "no answer recorded: the attempt was interrupted"

# Rows whose last attempt was interrupted after the last allowed one: nothing more to try.
FAIL_EXHAUSTED = """
UPDATE webhook_deliveries SET status = 'failed'
WHERE status = 'pending' AND attempts >= $1 AND next_attempt_at <= now()
"""
# Tenants with due rows, oldest first; per tenant its oldest due rows, at most $2; at most $1 in all. The
# attempt is counted and its retry scheduled here (base $3 * 2^attempts, capped at $4).
CLAIM_DUE = """
WITH due_tenants AS (
    SELECT tenant_id, min(next_attempt_at) AS oldest FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
    GROUP BY tenant_id ORDER BY oldest LIMIT $1
), claimed AS (
    SELECT w.id FROM due_tenants d
    CROSS JOIN LATERAL (
        SELECT id FROM webhook_deliveries w
        WHERE w.tenant_id = d.tenant_id AND w.status = 'pending' AND w.next_attempt_at <= now()
        ORDER BY w.next_attempt_at LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) w
    LIMIT $1
)
UPDATE webhook_deliveries w
SET attempts = w.attempts + 1, last_error = $5, last_status_code = NULL,
    next_attempt_at = now() + make_interval(secs => least($4::float8, $3::float8 * 2 ^ w.attempts))
FROM claimed c, tenants t
WHERE w.id = c.id AND t.id = w.tenant_id
RETURNING w.id, w.event_id, w.event_type, w.payload, w.attempts, w.channel_id, t.slug, t.webhook_url,
          t.webhook_secret,
          CASE WHEN t.webhook_secret_previous_until > now() THEN t.webhook_secret_previous END AS previous_secret,
          (SELECT ch.kind FROM channels ch WHERE ch.id = w.channel_id AND ch.tenant_id = w.tenant_id) AS channel_kind,
          (SELECT ch.config_sealed FROM channels ch
           WHERE ch.id = w.channel_id AND ch.tenant_id = w.tenant_id AND ch.enabled) AS channel_config
"""
MARK_DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), last_status_code = $2, last_error = NULL
WHERE id = $1
"""
MARK_FAILED_ATTEMPT = """
UPDATE webhook_deliveries SET last_status_code = $2, last_error = $3,
    status = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'pending' END
WHERE id = $1
"""


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    return min(cap, base * (2 ** attempts))


class OutboxSender:
    def __init__(self, pool: asyncpg.Pool, *, egress: EgressPolicy = PUBLIC_ONLY, batch: int = 50,
                 per_tenant: int = 10, timeout_s: float = 10.0, max_attempts: int = 20,
                 backoff_base_s: float = 5.0, backoff_cap_s: float = 3600.0, idle_poll_s: float = 1.0,
                 secret_box: SecretBox | None = None, smtp: SmtpSettings | None = None,
                 domain: str = "localhost") -> None:
        self._pool = pool
        self._box = secret_box
        self._smtp = smtp
        self._domain = domain
        self._egress = egress
        self._batch = batch
        self._per_tenant = per_tenant
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._base = backoff_base_s
        self._cap = backoff_cap_s
        self._idle = idle_poll_s
        self.delivered = 0

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        async with WebhookClient(self._egress, self._timeout_s) as client:
            while not stop.is_set():
                try:
                    sent = await self.deliver_due(client)
                    delay = 0.5
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log_fields(logger, logging.WARNING, "webhook queue unavailable, retrying", error=str(exc))
                    sent = 0
                    await _wait(stop, delay)
                    delay = min(delay * 2, 10.0)
                    continue
                if sent == 0:
                    await _wait(stop, self._idle)

    async def deliver_due(self, client: WebhookClient) -> int:
        """One round: claim (and count) due events, send them concurrently, record the outcomes; returns
        how many were tried."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(FAIL_EXHAUSTED, self._max_attempts)
            rows = await conn.fetch(CLAIM_DUE, self._batch, self._per_tenant, self._base, self._cap, INTERRUPTED)
        if not rows:
            return 0
        ctx = SendContext(egress=self._egress, smtp=self._smtp, timeout_s=self._timeout_s, http=client)
        outcomes = await asyncio.gather(*(self._send(ctx, row) for row in rows))
        async with self._pool.acquire() as conn:
            for row, (status, error) in zip(rows, outcomes, strict=True):
                if error is None:
                    await conn.execute(MARK_DELIVERED, row["id"], status)
                    self.delivered += 1
                else:
                    await conn.execute(MARK_FAILED_ATTEMPT, row["id"], status, error, self._max_attempts)
                    log_fields(logger, logging.INFO, "delivery failed, will retry", event_id=row["event_id"],
                               channel_id=row["channel_id"], status=status, error=error,
                               retry_in_s=backoff_seconds(row["attempts"] - 1, self._base, self._cap))
        return len(rows)

    async def _send(self, ctx: SendContext, row: Any) -> tuple[int | None, str | None]:
        try:
            return await self._send_row(ctx, row)
        except Exception as exc:  # noqa: BLE001 - one channel's bug must not stop the sender for everyone
            # the type only: a message could quote a URL with its token
            log_fields(logger, logging.ERROR, "channel send failed unexpectedly", channel_id=row["channel_id"],
                       error=type(exc).__name__)
            return None, "the channel failed unexpectedly; it will be retried"

    async def _send_row(self, ctx: SendContext, row: Any) -> tuple[int | None, str | None]:
        if row["channel_id"] is None:
            return await self._post_tenant_webhook(ctx.http, row)
        if row["channel_config"] is None:
            return None, "the channel is disabled"
        channel = CHANNELS.get(row["channel_kind"])
        if channel is None or self._box is None:
            return None, "this worker cannot send to this channel kind"
        try:
            config = channel.parse(json.loads(self._box.open(row["channel_config"])))
        except (SealError, ValidationError, ValueError):
            return None, "the channel's stored settings cannot be opened; save the channel again"
        event = Event.from_payload(row["event_type"], row["payload"], f"https://{row['slug']}.{self._domain}")
        return await channel.send(config, event, ctx)

    async def _post_tenant_webhook(self, client: WebhookClient, row: Any) -> tuple[int | None, str | None]:
        if not row["webhook_url"]:
            return None, "tenant has no webhook URL any more"
        secrets = [s for s in (row["webhook_secret"] or "", row["previous_secret"]) if s is not None]
        return await client.post(row["webhook_url"], row["event_type"], row["event_id"], event_body(row["payload"]),
                                 secrets)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
