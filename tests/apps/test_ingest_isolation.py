"""One tenant's bad metrics must not fail another tenant's: the group commit shares a COPY between tenants.

Against a real tracker: a poisoner sends metric names with NUL while an innocent tenant ingests; the
innocent one must see no error at all. Against the writer itself (real Postgres): a value the database
refuses fails only the submission that carried it, even when it slipped past the API's validation.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime

from iot_processes import Tracker
from test_tracker_api import db_query

from iot.errors import InputError
from iot.repo import devices, tenants
from iot.repo.devices import DeviceSpec
from iot.tracker.ingest import MetricWriter

SECONDS = 6.0


def push_token(tracker: Tracker, slug: str) -> tuple[int, str]:
    with tracker.client(tracker.create_tenant(slug)) as tenant:
        created = tenant.post("/v1/devices", json={"name": "meter", "kind": "push"}).json()
    return created["id"], created["token"]


def hammer(tracker: Tracker, token: str, body: bytes, statuses: Counter, stop: threading.Event) -> None:
    with tracker.client(token) as client:
        while not stop.is_set():
            response = client.post("/v1/metrics", content=body, headers={"content-type": "application/json"})
            statuses[response.status_code] += 1


def test_nul_metric_names_fail_alone_and_the_innocent_tenant_sees_no_error(tracker: Tracker) -> None:
    innocent_id, innocent = push_token(tracker, "innocent")
    _, poisoner = push_token(tracker, "poisoner")
    good = json.dumps({"points": [{"name": f"temp_{i}", "value": i} for i in range(20)]}).encode()
    bad = json.dumps({"points": [{"name": "temp\x00", "value": 1}]}).encode()
    stop = threading.Event()
    # One counter per thread (a shared `+=` is not atomic across threads), summed at the end.
    innocent_counts = [Counter() for _ in range(4)]
    poisoner_counts = [Counter() for _ in range(4)]
    threads = [threading.Thread(target=hammer, args=(tracker, innocent, good, c, stop)) for c in innocent_counts]
    threads += [threading.Thread(target=hammer, args=(tracker, poisoner, bad, c, stop)) for c in poisoner_counts]
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join(30)
    innocent_statuses = sum(innocent_counts, Counter())
    poisoner_statuses = sum(poisoner_counts, Counter())
    print(f"innocent tenant: {dict(innocent_statuses)}; poisoner: {dict(poisoner_statuses)} in {SECONDS:.0f} s")
    errors = sum(n for status, n in innocent_statuses.items() if status != 200)
    assert innocent_statuses[200] > 0
    assert errors == 0, f"the innocent tenant got {errors} errors: {dict(innocent_statuses)}"
    assert set(poisoner_statuses) == {422}, poisoner_statuses
    stored = db_query(tracker, "SELECT count(*) AS n FROM device_metrics WHERE device_id = $1", innocent_id)[0]["n"]
    assert stored == 20 * innocent_statuses[200]


async def test_a_value_the_database_refuses_fails_only_its_own_submission(pool) -> None:
    tenant_a, _ = await tenants.create_tenant(pool, "writer-a")
    tenant_b, _ = await tenants.create_tenant(pool, "writer-b")
    (a,) = await devices.create_devices(pool, tenant_a.id, [DeviceSpec("a", "push")])
    (b,) = await devices.create_devices(pool, tenant_b.id, [DeviceSpec("b", "push")])
    writer = MetricWriter(pool)
    writer.start()
    now = datetime.now(UTC)
    try:
        # The three share one batch; the middle one carries what Postgres cannot store in text.
        results = await asyncio.gather(
            writer.write(a.id, [(now, "ok", 1.0)] * 10, now),
            writer.write(b.id, [(now, "ok", 1.0), (now, "bad\x00name", 2.0)], now),
            writer.write(a.id, [(now, "ok", 3.0)] * 5, now),
            return_exceptions=True,
        )
    finally:
        await writer.stop()
    assert results[0] == 10 and results[2] == 5, results
    assert isinstance(results[1], InputError), results[1]
    assert "points" in results[1].field
    assert await pool.fetchval("SELECT count(*) FROM device_metrics WHERE device_id = $1", a.id) == 15
    assert await pool.fetchval("SELECT count(*) FROM device_metrics WHERE device_id = $1", b.id) == 0
    assert await pool.fetchval("SELECT last_seen_at FROM devices WHERE id = $1", b.id) is None
