"""Per-device retries and probe warnings in the evaluator (real Redis and PostgreSQL): a device with
retries=4 stays up through failures that take a default device (FAILURES_TO_DOWN=2) down; a passing check
that carries a warning (TLS certificate close to expiry) makes the device degraded, and a clean pass ends it."""

from __future__ import annotations

import asyncio
import time

from test_worker_evaluator import REGIONS, _evaluator, _processed, _send, _state_is, _wait_for, env  # noqa: F401

from iot.worker.catalog import load_devices
from iot.worker.state import RegionView, Thresholds


def _rows(device_ids, ok: bool, at: float, error: str | None = None) -> list[list]:
    return [[d, 1 if ok else 0, 5.0 if ok else None, error if error or ok else "HTTP 500", at] for d in device_ids]


async def test_per_device_retries_and_warnings(env):  # noqa: F811 - the fixture
    pool, client, _ = env
    ids = sorted(r["id"] for r in await pool.fetch("SELECT id FROM devices"))
    patient, default, tls = ids[0], ids[1], ids[2]
    await pool.execute("UPDATE devices SET retries = 4 WHERE id = $1", patient)
    await pool.execute("UPDATE devices SET kind = 'tls', target = '127.0.0.1:443', options = '{\"warn_days\": 30}' "
                       "WHERE id = $1", tls)
    devices = await load_devices(pool)
    assert devices[patient].retries == 4 and devices[default].retries is None
    assert devices[tls].check_fragment().endswith(',{"warn_days":30}]')
    evaluator = _evaluator(pool, client, devices)
    await evaluator.load()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop, lambda: True))
    try:
        t0 = time.time()
        for region in REGIONS:
            await _send(client, region, _rows(ids, True, t0))
        for device_id in ids:
            await _wait_for(lambda d=device_id: _state_is(pool, d, "up"))
        sent = 3 * len(ids)
        for step in (1, 2):
            for region in REGIONS:
                await _send(client, region, _rows([patient, default], False, t0 + 10 * step))
            sent += 6
        await _wait_for(lambda: _state_is(pool, default, "down"))
        await _wait_for(lambda: _processed(evaluator, sent))
        assert evaluator.states[patient] == "up"  # 2 failures in a row < its 4 retries
        for step in (3, 4):
            for region in REGIONS:
                await _send(client, region, _rows([patient], False, t0 + 10 * step))
        await _wait_for(lambda: _state_is(pool, patient, "down"))

        for region in REGIONS:
            await _send(client, region, _rows([tls], True, t0 + 10, "TLS certificate expires in 9 days"))
        await _wait_for(lambda: _state_is(pool, tls, "degraded"))
        last_error = await pool.fetchval("SELECT last_error FROM device_region_state WHERE device_id = $1 LIMIT 1", tls)
        assert last_error == "TLS certificate expires in 9 days"
        summary = await pool.fetchval("SELECT summary FROM incidents WHERE device_id = $1 AND kind = 'degraded'", tls)
        assert "is degraded: TLS certificate expires in 9 days from " in summary  # the regions of the quorum
        for region in REGIONS:
            await _send(client, region, _rows([tls], True, t0 + 20))
        await _wait_for(lambda: _state_is(pool, tls, "up"))
    finally:
        stop.set()
        await task


def test_a_warning_view_reads_degraded_and_failures_still_win() -> None:
    th = Thresholds(failures_to_down=2)
    view = RegionView()
    view.apply(True, 5.0, "TLS certificate expires in 3 days", 1.0, th, 4.0, 100.0)
    assert view.state(th, 3) == "degraded"
    view.apply(True, 5.0, None, 2.0, th, 4.0, 100.0)
    assert view.state(th, 3) == "up"
    view.apply(False, None, "TLS certificate expired", 3.0, th, 4.0, 100.0)
    view.apply(False, None, "TLS certificate expired", 4.0, th, 4.0, 100.0)
    assert view.state(th, 3) == "down"
