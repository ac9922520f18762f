"""Heartbeat and canaries: tell the worker this region is live, and whether its own network works.

The worker only dispatches to regions with a recent heartbeat. Canaries are targets that must always
answer; when they fail, the region's network is the problem and the worker excludes the region from
quorums instead of blaming devices (DESIGN §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from iot import protocol
from iot.log import log_fields
from iot.monitor.probes import Prober

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Canary:
    kind: str
    target: str


def parse_canaries(spec: str) -> list[Canary]:
    """'http://a/health, 1.1.1.1:443, 1.1.1.1' -> http, tcp (host:port) and icmp (bare host) canaries."""
    canaries: list[Canary] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item.startswith(("http://", "https://")):
            canaries.append(Canary("http", item))
        elif item.count(":") == 1 or item.startswith("["):
            canaries.append(Canary("tcp", item))
        elif " " in item or "/" in item:
            raise ValueError(
                f"MONITOR canary {item!r} is not an http(s) URL, host:port or host; fix the CANARIES variable"
            )
        else:
            canaries.append(Canary("icmp", item))
    return canaries


class Heartbeat:
    def __init__(
        self,
        client: aioredis.Redis,
        prober: Prober,
        *,
        region: str,
        instance: str,
        canaries: list[Canary],
        heartbeat_seconds: float,
        canary_seconds: float,
        canary_timeout_s: float = 2.0,
    ) -> None:
        self._redis = client
        self._prober = prober
        self.member = protocol.heartbeat_member(region, instance)
        self._canaries = canaries
        self._heartbeat_seconds = heartbeat_seconds
        self._canary_seconds = canary_seconds
        self._canary_timeout = canary_timeout_s
        self.canaries_ok: bool | None = None
        self.canaries_failed: list[str] = []

    async def beat(self) -> None:
        await self._redis.zadd(protocol.MONITOR_HEARTBEATS_KEY, {self.member: time.time()})

    async def probe_canaries(self) -> None:
        if not self._canaries:
            return
        results = await asyncio.gather(
            *(self._prober.check(c.kind, c.target, self._canary_timeout) for c in self._canaries)
        )
        failed = [c.target for c, r in zip(self._canaries, results, strict=True) if not r.ok]
        # A region is bad only when ALL its canaries fail; one broken canary is the canary's problem.
        ok = len(failed) < len(self._canaries)
        if ok != self.canaries_ok:
            log_fields(logger, logging.INFO if ok else logging.WARNING, "canaries changed",
                       ok=ok, failed=failed)
        self.canaries_ok, self.canaries_failed = ok, failed
        await self._redis.hset(
            protocol.MONITOR_CANARIES_KEY, self.member,
            json.dumps({"ok": ok, "at": time.time(), "failed": failed}),
        )

    async def run(self, stop: asyncio.Event) -> None:
        next_canary = 0.0
        while not stop.is_set():
            try:
                await self.beat()
                if time.monotonic() >= next_canary:
                    next_canary = time.monotonic() + self._canary_seconds
                    await self.probe_canaries()
            except (RedisError, OSError) as exc:
                log_fields(logger, logging.WARNING, "heartbeat failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(self._heartbeat_seconds, self._canary_seconds))

    async def leave(self) -> None:
        """Remove this monitor from the live set at clean shutdown (the region stays live if others beat)."""
        try:
            await self._redis.zrem(protocol.MONITOR_HEARTBEATS_KEY, self.member)
            await self._redis.hdel(protocol.MONITOR_CANARIES_KEY, self.member)
        except (RedisError, OSError) as exc:
            log_fields(logger, logging.WARNING, "could not deregister heartbeat", error=str(exc))
