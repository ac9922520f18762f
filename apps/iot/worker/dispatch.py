"""Send planned batches to the regions' `checks:<region>` streams, fenced by the leader lock.

Each batch is ONE stream message (protocol.CHECKS_FIELD = JSON array of check entries, see
`iot.monitor.batches`: [device_id, kind, target, timeout_ms, tenant_id, interval_s], protocol.SENT_FIELD =
unix time) and ONE Redis command: a Lua script that XADDs only while the lock still holds this leader's
token. All commands of a tick go in one MULTI/EXEC pipeline (one round trip, applied all or nothing),
followed by each region stream's trim (`iot.worker.trim`: entries the monitors finished are deleted).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from iot import protocol
from iot.worker.trim import StreamTrimmer

FENCED_XADD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return false
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[4], ARGV[5], ARGV[6])
"""

FENCED_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return false
end
return redis.call('SET', KEYS[2], ARGV[2])
"""


@dataclass(frozen=True, slots=True)
class DispatchOutcome:
    batches: int
    fenced_out: int  # batches refused because the lock is no longer ours


class Dispatcher:
    def __init__(self, client: aioredis.Redis, trimmer: StreamTrimmer | None = None) -> None:
        self._redis = client
        self._xadd = client.register_script(FENCED_XADD)
        self._set = client.register_script(FENCED_SET)
        self._trimmer = trimmer

    async def dispatch(
        self, token: str, regions: list[str], payloads: list[str], planned_until: int, sent: float | None = None
    ) -> DispatchOutcome:
        """XADD every payload to every region and record `planned_until`, all fenced by `token`.

        `sent` (unix time, default now) stamps the batches; the scheduler passes the clock reading its plan
        ends at, so a batch's stamp never falls in a second after `planned_until`.
        """
        # truncated, not rounded: x.9996 must stay in second x
        stamp = f"{math.floor((time.time() if sent is None else sent) * 1000) / 1000:.3f}"
        # MULTI/EXEC: a leader killed mid-dispatch sent all of this tick or none of it, and `planned_until`
        # says which; its successor then neither repeats nor drops a second.
        async with self._redis.pipeline(transaction=True) as pipe:
            for region in regions:
                stream = protocol.checks_stream(region)
                for payload in payloads:
                    await self._xadd(
                        keys=[protocol.WORKER_LOCK_KEY, stream],
                        args=[token, protocol.CHECKS_STREAM_MAXLEN, protocol.CHECKS_FIELD, payload,
                              protocol.SENT_FIELD, stamp],
                        client=pipe,
                    )
            await self._set(
                keys=[protocol.WORKER_LOCK_KEY, protocol.WORKER_PLANNED_UNTIL_KEY],
                args=[token, planned_until], client=pipe,
            )
            if self._trimmer is not None:
                for region in regions:
                    await self._trimmer.trim(protocol.checks_stream(region), protocol.CHECKS_GROUP, client=pipe)
            replies = await pipe.execute()
        batch_replies = replies[: len(regions) * len(payloads)]
        fenced = sum(1 for r in batch_replies if r is None)
        return DispatchOutcome(batches=len(batch_replies) - fenced, fenced_out=fenced)
