"""Request bodies against a real `iot tracker`: the size limit holds before routing and parsing (declared,
chunked and anonymous bodies alike), credentials are checked before a body is read, and a body that stalls
is cut off. Memory is the tracker process's own, read from /proc."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from iot_processes import Tracker, start_tracker
from raw_http import ProcessMemory, repeated, send

from iot.db.migrate import migrate

MIB = 1 << 20
BODY_TIMEOUT = 2.0
POINT = b'{"name":"temperature_c","value":21.5},'


@pytest.fixture(scope="module")
def database_url(postgres_server) -> str:
    url = postgres_server.create_database(f"body_limits_{os.getpid()}")
    asyncio.run(migrate(url))
    return url


@pytest.fixture
def tracker(database_url, redis_server, tmp_path) -> Iterator[Tracker]:
    """A fresh tracker per test: a process that already grew would hide the next test's growth."""
    running = start_tracker(database_url, redis_server.url, tmp_path, REQUEST_BODY_TIMEOUT_SECONDS=BODY_TIMEOUT)
    yield running
    running.process.stop()


@pytest.fixture
def device_token(tracker: Tracker) -> str:
    with tracker.client(tracker.create_tenant(f"bodies-{os.urandom(3).hex()}")) as tenant:
        response = tenant.post("/v1/devices", json={"name": "meter", "kind": "push"})
        assert response.status_code == 201, response.text
        return response.json()["token"]


def metrics_body(total: int) -> Iterator[bytes]:
    """Valid JSON of exactly `total` bytes: {"points": [...]} padded with whitespace."""
    head, tail = b'{"points":[', b'{"name":"t","value":0}]}'
    points = (total - len(head) - len(tail)) // len(POINT)
    yield head
    yield from repeated(POINT, points * len(POINT))
    yield tail + b" " * (total - len(head) - len(tail) - points * len(POINT))


def measured(tracker: Tracker, label: str, **request) -> tuple[object, float]:
    """Send one request; return the response and the tracker's peak RSS growth (MiB) while it ran."""
    memory = ProcessMemory(tracker.process.proc.pid)
    before = memory.rss_mib()
    memory.reset_peak()
    response = send(tracker.url, "POST", "/v1/metrics", **request)
    growth = memory.peak_mib() - before
    print(f"{label}: HTTP {response.status} after {response.seconds:.2f} s, "
          f"{response.body_bytes_sent / MIB:.1f} MiB sent, tracker peak RSS +{growth:.1f} MiB (from {before:.0f} MiB)")
    return response, growth


def test_anonymous_64_mib_body_is_refused_with_413_before_it_is_read(tracker: Tracker) -> None:
    size = 64 * MIB
    response, growth = measured(
        tracker, "anonymous 64 MiB, Content-Length",
        headers={"Content-Type": "application/json", "Content-Length": str(size)}, chunks=metrics_body(size),
    )
    assert response.status == 413, response.body
    assert b"at most" in response.body and b"split" in response.body, response.body
    assert growth < 20, f"tracker grew by {growth:.0f} MiB for a refused body"
    assert response.body_bytes_sent < size, "the whole body was read before the answer"


def test_authenticated_64_mib_body_is_refused_too(tracker: Tracker, device_token: str) -> None:
    size = 64 * MIB
    response, growth = measured(
        tracker, "device token, 64 MiB, Content-Length",
        headers={"Content-Type": "application/json", "Content-Length": str(size),
                 "Authorization": f"Bearer {device_token}"},
        chunks=metrics_body(size),
    )
    assert response.status == 413 and growth < 20, (response.status, growth)


def test_chunked_64_mib_body_is_cut_off_at_the_limit(tracker: Tracker, device_token: str) -> None:
    size = 64 * MIB
    response, growth = measured(
        tracker, "device token, 64 MiB, chunked",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {device_token}"},
        chunks=metrics_body(size), chunked=True,
    )
    assert response.status == 413, response.body
    assert growth < 20, f"tracker grew by {growth:.0f} MiB for a refused body"


def test_anonymous_chunked_body_gets_401_without_being_read(tracker: Tracker) -> None:
    size = 64 * MIB
    response, growth = measured(
        tracker, "anonymous 64 MiB, chunked",
        headers={"Content-Type": "application/json"}, chunks=metrics_body(size), chunked=True,
    )
    assert response.status == 401 and growth < 20, (response.status, growth)


def test_wrong_token_is_refused_before_the_body_arrives(tracker: Tracker) -> None:
    # The client declares 1 MiB but sends 100 bytes and waits: a server that reads the body before checking
    # the token would wait with it.
    response = send(tracker.url, "POST", "/v1/metrics",
                    {"Content-Type": "application/json", "Content-Length": str(MIB),
                     "Authorization": "Bearer iotd_not-a-token"},
                    metrics_body(MIB), stall_after=100, timeout=10 * BODY_TIMEOUT)
    print(f"wrong token, body stalled: HTTP {response.status} after {response.seconds:.2f} s")
    assert response.status == 401
    assert response.seconds < BODY_TIMEOUT, "the tracker waited for the body of an unauthenticated request"


def test_a_stalled_body_is_cut_off_with_408(tracker: Tracker, device_token: str) -> None:
    response = send(tracker.url, "POST", "/v1/metrics",
                    {"Content-Type": "application/json", "Content-Length": "1000",
                     "Authorization": f"Bearer {device_token}"},
                    metrics_body(1000), stall_after=100, timeout=10 * BODY_TIMEOUT)
    print(f"device token, body stalled: HTTP {response.status} after {response.seconds:.2f} s")
    assert response.status == 408, response.body
    assert b"REQUEST_BODY_TIMEOUT_SECONDS" not in response.body  # a client-facing reason, not a setting name
    assert BODY_TIMEOUT * 0.9 <= response.seconds < BODY_TIMEOUT * 4


def test_bodies_under_the_limit_still_work(tracker: Tracker, device_token: str) -> None:
    size = 3 * MIB  # about 80,000 points: the body fits, the point count does not
    response = send(tracker.url, "POST", "/v1/metrics",
                    {"Content-Type": "application/json", "Content-Length": str(size),
                     "Authorization": f"Bearer {device_token}"}, metrics_body(size))
    assert response.status == 413 and b"per request; split" in response.body, response.body
    with tracker.client(device_token) as device:
        ok = device.post("/v1/metrics", json={"points": [{"name": "t", "value": float(i)} for i in range(5000)]})
        assert ok.status_code == 200 and ok.json() == {"stored": 5000}


def test_a_content_length_of_thousands_of_digits_is_refused_not_a_500(tracker: Tracker, device_token: str) -> None:
    response = send(tracker.url, "POST", "/v1/metrics",
                    {"Content-Type": "application/json", "Content-Length": "9" * 5000,
                     "Authorization": f"Bearer {device_token}"}, [b"{}"], timeout=20)
    assert 400 <= response.status < 500, (response.status, response.body[:200])
