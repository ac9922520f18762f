"""Which check starts next: the check, not the batch, is the unit of concurrency, shared fairly by tenant.

Checks taken from any number of batches wait in one queue per tenant. Each lane of probes (sockets for
HTTP/TCP, echoes for ICMP) has a cap on checks in flight, and one tenant may hold at most `tenant_share`
of it, so a tenant whose devices hang (accept, never answer, 60 s timeouts) fills its own share and never
the monitor. Tenants with work take turns (round robin), one check each. A check that has not started
by its deadline (the moment its device's next check is due) is dropped and counted: a slow tenant's
backlog delays only that tenant. Memory is bounded by `queue_max` checks waiting in all: beyond it the
oldest checks of the tenant at its share with the longest queue go (only such a tenant's backlog can
grow; the consumer stops reading while the others' is long). Results go to the `ResultWriter` the
moment each check finishes; while its buffer is full no new check starts.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

from iot.monitor.batches import Check
from iot.monitor.metrics import MonitorMetrics
from iot.monitor.probes import ICMP_LANE, SOCKET_LANE, Prober, ProbeResult, lane_of
from iot.monitor.writer import ResultWriter

# Starts per event-loop turn: a burst of thousands of ready checks must not hold the loop (replies of
# checks already in flight would wait, and their latency would read high).
_STARTS_PER_TURN = 500


class _Lane:
    __slots__ = ("cap", "inflight", "name", "queues", "ready", "ready_set", "running", "tenant_cap")

    def __init__(self, name: str, cap: int, tenant_share: float) -> None:
        self.name = name
        self.cap = cap
        self.tenant_cap = max(1, math.floor(cap * tenant_share))
        self.inflight = 0
        self.running: dict[int, int] = {}  # tenant -> checks in flight
        self.queues: dict[int, deque[Check]] = {}  # tenant -> checks waiting, in arrival order
        self.ready: deque[int] = deque()  # tenants with waiting checks and room in their share, in turn order
        self.ready_set: set[int] = set()

    def mark_ready(self, tenant: int) -> None:
        if tenant not in self.ready_set and self.queues.get(tenant) and self.running.get(tenant, 0) < self.tenant_cap:
            self.ready.append(tenant)
            self.ready_set.add(tenant)


class FairScheduler:
    def __init__(self, prober: Prober, writer: ResultWriter, metrics: MonitorMetrics, *, concurrency: int,
                 icmp_concurrency: int, tenant_share: float, queue_max: int) -> None:
        self._prober = prober
        self._writer = writer
        self._metrics = metrics
        self._lanes = {SOCKET_LANE: _Lane(SOCKET_LANE, concurrency, tenant_share),
                       ICMP_LANE: _Lane(ICMP_LANE, icmp_concurrency, tenant_share)}
        self._queue_max = queue_max
        self._queued = 0
        self._pump_scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        writer.on_room = self.pump

    # ---- figures -------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def inflight(self) -> int:
        return sum(lane.inflight for lane in self._lanes.values())

    def runnable_queued(self) -> int:
        """Waiting checks that could start as soon as a slot frees: those of tenants below their share.
        The consumer reads more batches while this is low; a tenant stuck at its share does not count, so
        its backlog cannot stop the monitor from taking everyone else's work."""
        return sum(len(q) for lane in self._lanes.values() for t, q in lane.queues.items()
                   if lane.running.get(t, 0) < lane.tenant_cap)

    async def wait_idle(self) -> None:
        """Until no check waits or runs (shutdown: finish everything taken)."""
        await self._idle.wait()

    # ---- queueing ------------------------------------------------------------------------------------

    def submit(self, checks: list[Check]) -> None:
        for check in checks:
            lane = self._lanes[lane_of(check.kind)]
            queue = lane.queues.get(check.tenant)
            if queue is None:
                queue = lane.queues[check.tenant] = deque()
            queue.append(check)
            self._queued += 1
            lane.mark_ready(check.tenant)
        if self._queued > self._queue_max:
            self._shed()
        self._update_gauges()
        self.pump()

    def _shed(self) -> None:
        """Memory bound: drop the oldest waiting checks of the tenant at its share with the longest queue
        until at most `queue_max` wait. A tenant holding its share is the only one whose backlog the
        consumer's watermark does not bound; dropping the oldest keeps the checks with the most time left."""
        while self._queued > self._queue_max:
            full = sorted(((len(q), lane.name, t) for lane in self._lanes.values() for t, q in lane.queues.items()
                           if q and lane.running.get(t, 0) >= lane.tenant_cap), reverse=True)
            if not full:
                return  # only checks that can start soon wait: the consumer has stopped reading
            longest, lane_name, tenant = full[0]
            runner_up = full[1][0] if len(full) > 1 else 0
            queue = self._lanes[lane_name].queues[tenant]
            for _ in range(min(self._queued - self._queue_max, max(1, longest - runner_up))):
                self._drop(queue.popleft(), "overflow")

    def forget_lost(self) -> None:
        """Remove waiting checks of batches another monitor took over (they are its checks now)."""
        for lane in self._lanes.values():
            for tenant, queue in list(lane.queues.items()):
                kept = deque(c for c in queue if not c.batch.lost)
                self._queued -= len(queue) - len(kept)
                lane.queues[tenant] = kept
        self._update_gauges()

    def expire(self, now: float | None = None) -> int:
        """Drop waiting checks past their deadline, also in queues of tenants at their share (those are not
        popped until a slot frees). Called about once a second; returns how many were dropped."""
        now = time.time() if now is None else now
        dropped = 0
        for lane in self._lanes.values():
            for tenant, queue in list(lane.queues.items()):
                if not any(c.deadline < now for c in queue):
                    continue
                kept: deque[Check] = deque()
                for check in queue:
                    if check.deadline < now:
                        self._drop(check, "late")
                        dropped += 1
                    else:
                        kept.append(check)
                lane.queues[tenant] = kept
        if dropped:
            self._update_gauges()
            self.pump()
        return dropped

    def _drop(self, check: Check, reason: str) -> None:
        self._queued -= 1
        if not check.batch.lost:
            self._metrics.dropped.labels(reason).inc()
            self._writer.dropped(check)

    # ---- starting ------------------------------------------------------------------------------------

    def pump(self) -> None:
        """Start waiting checks while their lane and tenant have room (soon, not re-entrantly)."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        started = 0
        now = time.time()
        writer = self._writer
        for lane in self._lanes.values():
            while lane.ready and lane.inflight < lane.cap and started < _STARTS_PER_TURN and writer.has_room():
                tenant = lane.ready.popleft()
                lane.ready_set.discard(tenant)
                queue = lane.queues.get(tenant)
                # One check per turn while other tenants wait; a tenant alone goes on without re-queueing.
                while queue and lane.inflight < lane.cap and started < _STARTS_PER_TURN:
                    check = queue.popleft()
                    if check.batch.lost:
                        self._queued -= 1
                    elif check.deadline < now:
                        self._drop(check, "late")
                    else:
                        self._queued -= 1
                        self._start(lane, check, now)
                        started += 1
                        if lane.ready or lane.running.get(tenant, 0) >= lane.tenant_cap:
                            break
                if queue:
                    lane.mark_ready(tenant)
                elif queue is not None and lane.running.get(tenant, 0) == 0:
                    del lane.queues[tenant]
        if started >= _STARTS_PER_TURN and any(lane.ready for lane in self._lanes.values()):
            self.pump()
        self._update_gauges()

    def _start(self, lane: _Lane, check: Check, started_at: float) -> None:
        lane.inflight += 1
        lane.running[check.tenant] = lane.running.get(check.tenant, 0) + 1
        self._idle.clear()

        def done(result: ProbeResult) -> None:
            self._finished(lane, check, result, started_at)

        self._prober.begin(check.kind, check.target, check.timeout_s, done, check.options)

    def _finished(self, lane: _Lane, check: Check, result: ProbeResult, started_at: float) -> None:
        lane.inflight -= 1
        running = lane.running[check.tenant] - 1
        if running:
            lane.running[check.tenant] = running
        else:
            del lane.running[check.tenant]
            if not lane.queues.get(check.tenant, True):
                lane.queues.pop(check.tenant, None)
        self._writer.add(check, result, started_at)
        if check.tenant not in lane.ready_set and lane.queues.get(check.tenant):
            lane.mark_ready(check.tenant)
        if not self._pump_scheduled and lane.ready:
            self.pump()
        elif not self._pump_scheduled and self._queued == 0 and self.inflight == 0:
            self._update_gauges()  # idle now: wake whoever waits for it

    def _update_gauges(self) -> None:
        for lane in self._lanes.values():
            self._metrics.inflight.labels(lane.name).set(lane.inflight)
        self._metrics.queued.set(self._queued)
        if self._queued == 0 and self.inflight == 0:
            self._idle.set()
        else:
            self._idle.clear()
