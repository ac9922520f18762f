"""Issue 5 end to end, fault tolerance, counted exactly:
- `kill -9` of a monitor with batches in flight: its region's peer reclaims them; every check dispatched to
  the region ends as exactly one stored result (results stream and Postgres rollups agree with the checks).
- `kill -9` of the leading worker: the standby leads within the lock expiry, and no device is probed twice
  in one interval (simulator hit counters == dispatched checks, at most one per device, region and period).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict

import asyncpg
import httpx
import pytest
import redis
from iot_processes import REGIONS, create_tenant, wait_until

from iot import protocol
from iot.worker.planner import phase_of

pytestmark = pytest.mark.e2e

DEVICES = 60
# Longer than the check interval, so the failover gap spans more than one interval: the new leader's
# catch-up must still check each device once, not once per missed period.
LOCK_TTL_S = 8


def _add_devices(pipeline, tenant: httpx.Client, interval_s: int, timeout_ms: int) -> list[int]:
    body = [{"name": f"d{i}", "kind": "http", "target": f"http://127.0.0.1:{pipeline.sim_base_port + i}/",
             "interval_s": interval_s, "timeout_ms": timeout_ms} for i in range(DEVICES)]
    response = tenant.post("/v1/devices", json=body)
    assert response.status_code == 201, response.text
    return [d["id"] for d in response.json()["devices"]]


def _all_up(tenant: httpx.Client) -> bool:
    return tenant.get("/v1/devices", params={"state": "up", "limit": 1}).json()["total"] == DEVICES


def _group(client: redis.Redis, stream: str, group: str) -> dict:
    return next(g for g in client.xinfo_groups(stream) if g["name"].decode() == group)


def _delivered_checks(client: redis.Redis, region: str) -> list[tuple[float, list[int]]]:
    """(sent, device ids) of every check batch a monitor of `region` took; asserts none is still pending."""
    stream = protocol.checks_stream(region)
    group = _group(client, stream, protocol.CHECKS_GROUP)
    assert group["pending"] == 0, f"{region}: {group['pending']} batches still pending"
    batches = []
    for _id, fields in client.xrange(stream, "-", group["last-delivered-id"]):
        checks = json.loads(fields[protocol.CHECKS_FIELD.encode()])
        batches.append((float(fields[protocol.SENT_FIELD.encode()]), [c[0] for c in checks]))
    return batches


def _evaluated_everything(client: redis.Redis) -> bool:
    """The evaluator read every result batch and acknowledged it (it acks only after the Postgres commit)."""
    group = _group(client, protocol.RESULTS_STREAM, protocol.RESULTS_GROUP)
    last = client.xinfo_stream(protocol.RESULTS_STREAM)["last-generated-id"]
    return group["pending"] == 0 and group["last-delivered-id"] == last


def _stop_monitors(pipeline) -> None:
    """SIGTERM: each monitor finishes the batches it holds, writes their results and exits."""
    for proc in pipeline.procs:
        if proc.name.startswith("monitor-") and proc.proc.poll() is None:
            assert proc.stop() == 0, f"{proc.name} did not exit cleanly:\n{proc.tail()}"


def _rollup_checks(database_url: str, region: str) -> Counter:
    async def fetch() -> Counter:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT device_id, sum(checks) AS n FROM rollups WHERE region = $1 "
                                    "GROUP BY device_id", region)
        finally:
            await conn.close()
        return Counter({r["device_id"]: r["n"] for r in rows})
    return asyncio.run(fetch())


def test_kill_9_of_a_monitor_mid_batch_loses_no_check(pipeline_factory, redis_server):
    region = "ashburn"
    # small batches read one at a time, so both monitors of the region hold some
    monitor_env = {"RECLAIM_IDLE_SECONDS": 5, "BATCH_READ_COUNT": 1}
    # keep finished batches and results in the streams, so this test can count every one of them
    worker_env = {"BATCH_SIZE": 2, "STREAM_KEEP_SECONDS": 3600}
    pipeline = pipeline_factory(DEVICES, worker_env=worker_env, monitor_env={**monitor_env, "INSTANCE_ID": "a"},
                                extra_services={f"monitor-{region}-b": (["monitor"], {
                                    "REGION": region, "MONITOR_SOURCE_ADDRESS": REGIONS[region],
                                    "HEARTBEAT_SECONDS": 2, **monitor_env, "INSTANCE_ID": "b"})})
    procs = pipeline.procs
    client = redis.Redis.from_url(redis_server.url)
    stream = protocol.checks_stream(region)
    api_key = create_tenant(pipeline.tracker_url, "killmon")
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        # every probe takes 1.5 s, so batches are in flight most of the time; a 15 s interval keeps a
        # reclaimed (late) result ahead of the device's next regular check
        assert simulator.post("/devices", json={"delay_ms": 1500}).status_code == 200
        ids = _add_devices(pipeline, tenant, interval_s=15, timeout_ms=4000)
        wait_until(lambda: _all_up(tenant), 45, "all devices up", procs)

        def held_by_a() -> list:
            return client.xpending_range(stream, protocol.CHECKS_GROUP, "-", "+", 100, consumername="a")
        wait_until(held_by_a, 20, "monitor a holding batches", procs)
        victim = pipeline.proc(f"monitor-{region}")
        victim.proc.kill()  # SIGKILL: no chance to finish, write or acknowledge anything
        victim.proc.wait(5)
        orphaned = [p["message_id"] for p in held_by_a()]
        assert orphaned, "the killed monitor held no batch; nothing was tested"
        orphaned_checks = sum(len(json.loads(client.xrange(stream, m, m)[0][1][protocol.CHECKS_FIELD.encode()]))
                              for m in orphaned)
        alive = [p for p in procs if p is not victim]
        # the orphans are re-probed by monitor b: 1.5 s each, after RECLAIM_IDLE_SECONDS
        wait_until(lambda: not any(client.xpending_range(stream, protocol.CHECKS_GROUP, m, m, 1) for m in orphaned),
                   20, "the orphaned batches reclaimed, probed and acknowledged by monitor b", alive)

        _stop_monitors(pipeline)
        wait_until(lambda: _evaluated_everything(client), 20, "every result evaluated and stored",
                   [pipeline.proc("worker")])

    for name in REGIONS:
        dispatched = Counter(d for _sent, devices in _delivered_checks(client, name) for d in devices)
        reported = Counter()
        for _id, fields in client.xrange(protocol.RESULTS_STREAM):
            if fields[protocol.REGION_FIELD.encode()].decode() == name:
                reported.update(r[0] for r in json.loads(fields[protocol.RESULTS_FIELD.encode()]))
        stored = _rollup_checks(pipeline.database_url, name)
        assert set(dispatched) == set(ids)
        # exactly one result per dispatched check: none lost with the killed monitor, none doubled
        assert reported == dispatched, f"{name}: results differ from checks"
        assert stored == dispatched, f"{name}: stored rollups differ from checks"
    client.close()
    print(f"monitor killed holding {len(orphaned)} batches ({orphaned_checks} checks); all re-probed and stored")


def _reported(client: redis.Redis, region: str) -> Counter:
    reported: Counter = Counter()
    for _id, fields in client.xrange(protocol.RESULTS_STREAM):
        if fields[protocol.REGION_FIELD.encode()].decode() == region:
            reported.update(r[0] for r in json.loads(fields[protocol.RESULTS_FIELD.encode()]))
    return reported


def test_kill_9_of_a_monitor_with_partially_written_batches_stores_each_check_once(pipeline_factory, redis_server):
    """Issue 13: results are stored as checks finish, so a monitor can die with batches half written. The
    peer that takes them over probes only the checks without a stored result: every check dispatched ends
    with exactly one result, in the stream and in the rollups."""
    region = "ashburn"
    monitor_env = {"RECLAIM_IDLE_SECONDS": 5, "BATCH_READ_COUNT": 1}
    # keep finished batches and results in the streams, so this test can count every one of them
    worker_env = {"BATCH_SIZE": 4, "STREAM_KEEP_SECONDS": 3600}
    pipeline = pipeline_factory(DEVICES, worker_env=worker_env, monitor_env={**monitor_env, "INSTANCE_ID": "a"},
                                extra_services={f"monitor-{region}-b": (["monitor"], {
                                    "REGION": region, "MONITOR_SOURCE_ADDRESS": REGIONS[region],
                                    "HEARTBEAT_SECONDS": 2, **monitor_env, "INSTANCE_ID": "b"})})
    procs = pipeline.procs
    client = redis.Redis.from_url(redis_server.url)
    stream = protocol.checks_stream(region)
    stored_prefix = protocol.stored_bitmap_prefix(region)
    api_key = create_tenant(pipeline.tracker_url, "partial")
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        # odd devices answer after 3 s, even ones at once: every batch of 4 is half stored for 3 s
        odd = [i for i in range(DEVICES) if i % 2]
        assert simulator.post("/devices", json={"devices": odd, "delay_ms": 3000}).status_code == 200
        ids = _add_devices(pipeline, tenant, interval_s=15, timeout_ms=5000)
        wait_until(lambda: _all_up(tenant), 45, "all devices up", procs)

        def partial_on_a() -> list[str]:
            held = client.xpending_range(stream, protocol.CHECKS_GROUP, "-", "+", 100, consumername="a")
            return [p["message_id"].decode() for p in held if client.bitcount(stored_prefix + p["message_id"].decode())]
        wait_until(partial_on_a, 30, "monitor a holding a partially written batch", procs, interval=0.05)
        victim = pipeline.proc(f"monitor-{region}")
        victim.proc.kill()  # SIGKILL: some results of its batches are stored, the others not
        victim.proc.wait(5)
        held = client.xpending_range(stream, protocol.CHECKS_GROUP, "-", "+", 100, consumername="a")
        orphaned = [p["message_id"].decode() for p in held]
        partial = {m: client.bitcount(stored_prefix + m) for m in orphaned if client.bitcount(stored_prefix + m)}
        assert partial, "no orphaned batch was partially written; nothing was tested"
        alive = [p for p in procs if p is not victim]
        wait_until(lambda: not any(client.xpending_range(stream, protocol.CHECKS_GROUP, m, m, 1) for m in orphaned),
                   30, "the orphaned batches finished by monitor b", alive)
        assert not any(client.exists(stored_prefix + m) for m in orphaned), "bitmaps of finished batches remain"

        _stop_monitors(pipeline)
        wait_until(lambda: _evaluated_everything(client), 20, "every result evaluated and stored",
                   [pipeline.proc("worker")])

    for name in REGIONS:
        dispatched = Counter(d for _sent, devices in _delivered_checks(client, name) for d in devices)
        assert set(dispatched) == set(ids)
        assert _reported(client, name) == dispatched, f"{name}: results differ from checks (lost or doubled)"
        assert _rollup_checks(pipeline.database_url, name) == dispatched, f"{name}: rollups differ from checks"
    client.close()
    print(f"monitor killed holding {len(orphaned)} batches, {len(partial)} partially written "
          f"({sum(partial.values())} results already stored); each check stored exactly once")


def test_kill_9_of_the_leading_worker_fails_over_without_double_checks(pipeline_factory, redis_server):
    interval_s = 5
    keep = {"STREAM_KEEP_SECONDS": 3600}  # this test reads every dispatched batch back from the streams
    pipeline = pipeline_factory(DEVICES, worker_env={"LOCK_TTL_SECONDS": LOCK_TTL_S, **keep},
                                extra_services={"worker-b": (["worker"], {
                                    "LOCK_TTL_SECONDS": LOCK_TTL_S, "REGION_ALIVE_SECONDS": 8, **keep})})
    procs = pipeline.procs
    client = redis.Redis.from_url(redis_server.url)
    api_key = create_tenant(pipeline.tracker_url, "killworker")
    with pipeline.tracker(api_key) as tenant, pipeline.simulator() as simulator:
        ids = _add_devices(pipeline, tenant, interval_s=interval_s, timeout_ms=1000)
        wait_until(lambda: _all_up(tenant), 3 * interval_s + 15, "all devices up", procs)

        status = {name: httpx.get(f"{pipeline.urls[name]}/status", timeout=5).json() for name in ("worker", "worker-b")}
        leaders = [name for name, s in status.items() if s["leader"]]
        assert len(leaders) == 1, status
        leader = pipeline.proc(leaders[0])
        standby = "worker-b" if leaders[0] == "worker" else "worker"
        # let the leader run a full interval more, so the failover lands mid-schedule
        def leader_processed() -> int:
            return httpx.get(f"{pipeline.urls[leaders[0]]}/status", timeout=5).json()["results_processed"]
        start = leader_processed()
        wait_until(lambda: leader_processed() >= start + DEVICES * len(REGIONS), 3 * interval_s, "a full interval",
                   procs)
        leader.proc.kill()
        killed_at = time.monotonic()
        leader.proc.wait(5)
        alive = [p for p in procs if p is not leader]
        wait_until(lambda: httpx.get(f"{pipeline.urls[standby]}/status", timeout=5).json()["leader"],
                   LOCK_TTL_S + 5, "the standby leading", alive, interval=0.1)
        takeover_s = time.monotonic() - killed_at
        # within the lock expiry (+ the standby's poll period of TTL/4 and this test's polling)
        assert takeover_s <= LOCK_TTL_S * 1.25 + 1.0
        processed = httpx.get(f"{pipeline.urls[standby]}/status", timeout=5).json()["results_processed"]
        wait_until(lambda: httpx.get(f"{pipeline.urls[standby]}/status", timeout=5).json()["results_processed"]
                   >= processed + 2 * DEVICES * len(REGIONS), 4 * interval_s, "checks flowing after failover", alive)
        assert _all_up(tenant)

        _stop_monitors(pipeline)
        hits = simulator.get("/hits", params={"per_source": 1}).json()["per_device_by_source"]

    index_of = {device_id: i for i, device_id in enumerate(ids)}
    for name, source in REGIONS.items():
        batches = _delivered_checks(client, name)
        dispatched = Counter(d for _sent, devices in batches for d in devices)
        # every probe the simulator received is a dispatched check, and every dispatched check was probed once
        assert {d: hits[index_of[d]].get(source, 0) for d in ids} == {d: dispatched[d] for d in ids}, name
        per_period: dict[int, Counter] = defaultdict(Counter)
        first_last: dict[int, list[float]] = {}
        for sent, devices in batches:
            for d in devices:
                per_period[d][(int(sent) - phase_of(d, interval_s)) // interval_s] += 1
                first_last.setdefault(d, [sent, sent])[1] = sent
        doubled = {d: p for d, periods in per_period.items() for p, n in periods.items() if n > 1}
        assert not doubled, f"{name}: devices checked twice in one interval: {doubled}"
        # and none skipped more than the one check merged into the catch-up after the failover
        for d, (first, last) in first_last.items():
            assert dispatched[d] >= int((last - first) / interval_s), (name, d, dispatched[d], first, last)
    client.close()
    print(f"standby took over {takeover_s:.1f} s after kill -9 of the leader (lock TTL {LOCK_TTL_S} s)")
