"""The schedule: every device due exactly once per interval, spread over the interval, batched."""

import json
from collections import Counter

from iot.worker.catalog import Device
from iot.worker.planner import Schedule, batch_payloads, phase_of


def _devices(n: int, interval: int) -> list[Device]:
    return [Device(id=i, tenant_id=1, name=f"d{i}", kind="http", target=f"http://127.0.0.1/{i}",
                   interval_s=interval, timeout_ms=1000) for i in range(1, n + 1)]


def test_every_device_is_due_exactly_once_per_interval_whatever_the_start_second():
    devices = _devices(500, 10) + [
        Device(id=1000 + i, tenant_id=1, name=f"s{i}", kind="tcp", target="127.0.0.1:1", interval_s=7,
               timeout_ms=500) for i in range(70)
    ]
    schedule = Schedule(devices)
    for start in (0, 1_700_000_003):
        ids_10 = Counter(json.loads(f)[0] for f in schedule.due_between(start, start + 9))
        assert {i for i in ids_10 if i <= 500} == set(range(1, 501))
        assert all(ids_10[i] == 1 for i in range(1, 501))
        ids_7 = Counter(json.loads(f)[0] for f in schedule.due_between(start, start + 6))
        assert all(ids_7[1000 + i] == 1 for i in range(70))


def test_phases_spread_load_over_the_interval():
    schedule = Schedule(_devices(6000, 60))
    per_second = [len(schedule.due(s)) for s in range(60)]
    assert sum(per_second) == 6000
    # 100 per second on average; no second gets a thundering herd
    assert max(per_second) < 200 and min(per_second) > 30


def test_phase_is_stable_across_processes():
    assert phase_of(12345, 60) == phase_of(12345, 60)
    assert 0 <= phase_of(2**40, 17) < 17


def test_batches_hold_at_most_batch_size_checks_and_decode():
    schedule = Schedule(_devices(1234, 1))
    payloads = batch_payloads(schedule.due(0), 500)
    assert [len(json.loads(p)) for p in payloads] == [500, 500, 234]
    first = json.loads(payloads[0])[0]
    # [device_id, kind, target, timeout_ms, tenant_id, interval_s]
    assert first[1:] == ["http", f"http://127.0.0.1/{first[0]}", 1000, 1, 1]


def test_batches_are_bounded_by_bytes_and_oversize_devices_are_not_scheduled():
    devices = [Device(id=i, tenant_id=7, name=f"d{i}", kind="http", target="http://127.0.0.1/" + "x" * 2000,
                      interval_s=1, timeout_ms=1000) for i in range(1, 201)]
    huge = Device(id=999, tenant_id=8, name="huge", kind="http", target="http://127.0.0.1/" + "y" * 1_000_000,
                  interval_s=1, timeout_ms=1000)
    schedule = Schedule([*devices, huge], max_batch_bytes=64 * 1024)
    assert schedule.oversize == [999] and schedule.device_count == 200
    payloads = batch_payloads(schedule.due(0), 500, 64 * 1024)
    assert all(len(p.encode()) <= 64 * 1024 for p in payloads)
    assert sorted(c[0] for p in payloads for c in json.loads(p)) == list(range(1, 201))
    assert len(payloads) == 7  # 200 entries of ~2 KiB: 31 per 64 KiB message


def test_a_catch_up_longer_than_the_interval_checks_each_device_once():
    # a failover gap of 23 s over 5 s intervals: every device once, not four or five times in one second
    schedule = Schedule(_devices(200, 5))
    ids = Counter(json.loads(f)[0] for f in schedule.due_between(1_700_000_000, 1_700_000_022))
    assert set(ids) == set(range(1, 201))
    assert set(ids.values()) == {1}
