"""Incident timelines as the real evaluator writes them: opened and resolved events, and a suppressed
child's incident naming the parent that held its alert back."""

from __future__ import annotations

import asyncio
import time

from test_worker_evaluator import (  # noqa: F401  (env is a fixture)
    REGIONS,
    _all_down,
    _all_up,
    _evaluator,
    _results,
    _send,
    _state_is,
    _wait_for,
    env,
)

from iot.repo import incidents
from iot.worker.catalog import load_devices


async def test_a_suppressed_childs_timeline_names_its_parent_and_events_follow_the_incident(env):  # noqa: F811
    pool, client, _ = env
    tenant = await pool.fetchval("SELECT id FROM tenants")
    gateway = await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target, interval_s) "
                                  "VALUES ($1, 'gw', 'icmp', '10.0.0.1', 10) RETURNING id", tenant)
    child = await pool.fetchval("INSERT INTO devices (tenant_id, name, kind, target, interval_s, parent_id) "
                                "VALUES ($1, 'kid', 'icmp', '10.0.2.1', 10, $2) RETURNING id", tenant, gateway)
    evaluator = _evaluator(pool, client, await load_devices(pool))
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    group = [gateway, child]
    try:
        t0 = time.time() - 30
        for region in REGIONS:
            await _send(client, region, _results(group, True, t0))
        await _wait_for(lambda: _all_up(pool, group))
        for k in (1, 2):
            for region in REGIONS:
                await _send(client, region, _results(group, False, t0 + k))
        await _wait_for(lambda: _all_down(pool, group))
        (parent_incident,) = await incidents.list_incidents(pool, tenant, open_only=True)
        detail = await incidents.get_incident(pool, tenant, parent_incident.id)
        assert detail is not None and [c.name for c in detail.suppressed_children] == ["kid"]

        for region in REGIONS:
            await _send(client, region, _results([gateway], True, t0 + 3) + _results([child], False, t0 + 3))
        await _wait_for(lambda: _state_is(pool, gateway, "up"))
        for region in REGIONS:
            await _send(client, region, _results([child], False, t0 + 4))

        async def child_opened() -> bool:
            return bool(await incidents.list_incidents(pool, tenant, device_id=child))
        await _wait_for(child_opened)
    finally:
        stop.set()
        await task
    parent = await incidents.get_incident(pool, tenant, parent_incident.id)
    assert parent is not None and [e.kind for e in parent.timeline] == ["opened", "resolved"]
    assert parent.timeline[1].text == "recovered: the device is up" and parent.suppressed_children == []
    (child_incident,) = await incidents.list_incidents(pool, tenant, device_id=child)
    timeline = (await incidents.get_incident(pool, tenant, child_incident.id)).timeline
    assert [(e.kind, e.text) for e in timeline] == [
        ("suppressed", f"alert suppressed by its parent gw (device {gateway}), which was down"),
        ("opened", child_incident.summary)]
