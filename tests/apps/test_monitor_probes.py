"""Probes against real loopback servers: HTTP status and latency, TCP connect, ICMP echo, timeouts."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web
from egress_targets import TEST_EGRESS_ALLOW_CIDRS

from iot.egress import EgressPolicy
from iot.monitor.heartbeat import parse_canaries
from iot.monitor.probes import Prober

LOOPBACK = EgressPolicy.parse(TEST_EGRESS_ALLOW_CIDRS)  # the test servers live on loopback


@pytest.fixture
async def http_server():
    seen: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        seen.append(request.remote or "")
        return web.Response(text="ok")

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=503)

    async def hang(_request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/hang", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture
async def prober():
    p = Prober("127.0.0.3", concurrency=50, egress=LOOPBACK)
    await p.start()
    yield p
    await p.close()


async def test_http_probe_reports_status_latency_and_binds_the_source_address(http_server, prober):
    base, seen = http_server
    ok = await prober.check("http", f"{base}/ok", 2)
    assert ok.ok and ok.latency_ms is not None and ok.latency_ms > 0
    assert seen == ["127.0.0.3"]
    broken = await prober.check("http", f"{base}/broken", 2)
    assert not broken.ok and broken.error == "HTTP 503"
    hang = await prober.check("http", f"{base}/hang", 0.3)
    assert not hang.ok and "timeout" in hang.error


async def test_tcp_probe_connects_or_reports_refusal(prober):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        up = await prober.check("tcp", f"127.0.0.1:{port}", 1)
        assert up.ok and up.latency_ms is not None
    finally:
        listener.close()
    down = await prober.check("tcp", f"127.0.0.1:{port}", 1)
    assert not down.ok and down.error
    bad = await prober.check("tcp", "no-port-here", 1)
    assert not bad.ok and "host:port" in bad.error


async def test_icmp_probe_pings_loopback_many_at_once(prober):
    results = await asyncio.gather(*(prober.check("icmp", "127.0.0.1", 2) for _ in range(200)))
    assert all(r.ok for r in results)
    assert all(r.latency_ms is not None and r.latency_ms >= 0 for r in results)


async def test_icmp_probe_times_out_on_an_unrouted_address(prober):
    # TEST-NET-1 is never routed: from a loopback source nothing answers
    result = await prober.check("icmp", "192.0.2.1", 0.3)
    assert not result.ok


def test_canary_spec_is_parsed_by_kind():
    canaries = parse_canaries("http://127.0.0.1:8080/health, 127.0.0.1:22 ,127.0.0.1")
    assert [(c.kind, c.target) for c in canaries] == [
        ("http", "http://127.0.0.1:8080/health"), ("tcp", "127.0.0.1:22"), ("icmp", "127.0.0.1")
    ]
    with pytest.raises(ValueError, match="CANARIES"):
        parse_canaries("not a target")


async def test_check_batch_mixes_kinds_and_keeps_the_order(http_server, prober):
    base, _ = http_server
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    try:
        checks = [
            ("icmp", "127.0.0.1", 2.0), ("http", f"{base}/ok", 2.0), ("tcp", f"127.0.0.1:{port}", 1.0),
            ("http", f"{base}/broken", 2.0), ("icmp", "127.0.0.1", 2.0), ("smtp", "x", 1.0),
        ] * 20
        results = await prober.check_batch(checks)
    finally:
        listener.close()
    assert [r.ok for r in results] == [True, True, True, False, True, False] * 20
    assert results[5].error == "unknown check kind 'smtp'"


async def test_keepalive_mode_reuses_connections_through_aiohttp(http_server):
    base, seen = http_server
    keepalive = Prober("127.0.0.3", concurrency=10, http_keepalive=True, egress=LOOPBACK)
    await keepalive.start()
    try:
        results = await keepalive.check_batch([("http", f"{base}/ok", 2.0)] * 5 + [("http", f"{base}/broken", 2.0)])
    finally:
        await keepalive.close()
    assert [r.ok for r in results] == [True] * 5 + [False]
    assert results[-1].error == "HTTP 503"
    assert seen == ["127.0.0.3"] * 5


async def test_http_probe_rejects_a_server_that_does_not_speak_http(prober):
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await prober.check("http", f"http://127.0.0.1:{port}/", 2)
    finally:
        server.close()
        await server.wait_closed()
    assert not result.ok and result.error == "not an HTTP response"  # the banner itself is never reported


async def test_tcp_batch_times_out_hanging_connects_without_deadlocking_the_bound():
    # backlog full and never accepted: further SYNs are dropped, connects hang until the timeout
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    small = Prober("127.0.0.3", concurrency=2, egress=LOOPBACK)  # fewer slots than hanging checks
    await small.start()
    try:
        results = await asyncio.wait_for(small.check_batch([("tcp", f"127.0.0.1:{port}", 0.3)] * 5), 10)
    finally:
        await small.close()
        for s in (*fillers, listener):
            s.close()
    assert [r.error for r in results] == ["timeout after 0.3s"] * 5


async def test_http_batch_reports_refusals_and_hangs_without_deadlocking_the_bound(http_server):
    base, _ = http_server
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens here any more
    small = Prober("127.0.0.3", concurrency=2, egress=LOOPBACK)  # fewer slots than hanging checks
    await small.start()
    try:
        checks = [("http", f"{base}/hang", 0.3)] * 4 + [("http", f"http://127.0.0.1:{closed_port}/", 1.0),
                                                         ("http", f"{base}/ok", 2.0), ("http", "http:///nohost", 1.0)]
        results = await asyncio.wait_for(small.check_batch(checks), 10)
    finally:
        await small.close()
    assert [r.error for r in results[:4]] == ["timeout after 0.3s"] * 4
    assert results[4].error == "Connection refused"
    assert results[5].ok
    assert not results[6].ok and "no host" in results[6].error
