"""http devices with options, against a real local HTTP server: method, headers and body are sent; expected
statuses (codes and ranges), keyword present/absent and JSON path equals decide; body reads are capped;
devices without options keep the plain fast probe. Options travel through the batch entry like in production."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from egress_targets import TEST_EGRESS_ALLOW_CIDRS

from iot.checks import KINDS
from iot.checks.http import MAX_BODY_READ
from iot.egress import EgressPolicy
from iot.monitor import batches
from iot.monitor.probes import PROBES, Prober
from iot.monitor.probes import http_conditions as hc
from iot.worker.catalog import Device

LOOPBACK = EgressPolicy.parse(TEST_EGRESS_ALLOW_CIDRS)


@pytest.fixture
async def server():
    seen: list[dict] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "headers": dict(request.headers), "body": await request.text(),
                     "path": request.path})
        status = int(request.query.get("status", "200"))
        return web.Response(status=status, text=request.query.get("text", "all good"))

    async def doc(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "count": 3, "healthy": True, "items": [{"state": "on"}]})

    async def huge(_request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(_request)
        chunk = b"x" * 65536
        for _ in range(MAX_BODY_READ // len(chunk) + 4):  # well over the cap, "ok" only at the end
            await response.write(chunk)
        await response.write(b"ok")
        return response

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/doc", doc)
    app.router.add_get("/huge", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture
async def prober():
    p = Prober("127.0.0.3", concurrency=20, egress=LOOPBACK)
    await p.start()
    yield p
    await p.close()


async def check(prober: Prober, url: str, options: dict) -> object:
    """Validate like the API, encode like the worker, decode like the monitor, then probe."""
    normalised = KINDS["http"].options(options)
    fragment = Device(1, 7, "d", "http", url, 60, 2000, options=normalised).check_fragment()
    decoded = batches.DecodedBatch(0.0, [json.loads(fragment)])
    (entry,) = batches.make_checks(batches.Batch("1-0", 1, 1), decoded)
    return await prober.check(entry.kind, entry.target, entry.timeout_s, entry.options)


def test_each_scheduled_kind_has_a_probe() -> None:
    assert set(PROBES) == {name for name, kind in KINDS.items() if kind.scheduled}


def test_entries_without_options_stay_as_before() -> None:
    plain = Device(1, 7, "d", "http", "http://x/", 60, 2000).check_fragment()
    assert plain == '[1,"http","http://x/",2000,7,60]'
    (entry,) = batches.make_checks(batches.Batch("1-0", 1, 1), batches.DecodedBatch(0.0, [json.loads(plain)]))
    assert entry.options is None


async def test_method_headers_and_body_are_sent(server, prober) -> None:
    base, seen = server
    result = await check(prober, f"{base}/echo", {"method": "POST", "headers": {"X-Api-Key": "k1", "Accept": "text/plain"},
                                                   "body": '{"ping": 1}'})
    assert result.ok, result
    assert seen[-1]["method"] == "POST" and seen[-1]["body"] == '{"ping": 1}'
    assert seen[-1]["headers"]["X-Api-Key"] == "k1" and seen[-1]["headers"]["Accept"] == "text/plain"
    head = await check(prober, f"{base}/echo", {"method": "HEAD"})
    assert head.ok and seen[-1]["method"] == "HEAD"


@pytest.mark.parametrize(("status", "rules", "ok"), [
    (204, [], True), (404, [], False), (404, [404], True), (201, ["200-299"], True), (302, ["200-299"], False),
    (302, ["200-299", "300-399"], True), (503, [200, "500-502"], False), (418, [200, 418], True),
])
async def test_expected_status_codes_and_ranges(server, prober, status: int, rules: list, ok: bool) -> None:
    base, _ = server
    result = await check(prober, f"{base}/echo?status={status}", {"expected_status": rules} if rules else {"method": "GET", "headers": {"X-A": "1"}})
    assert result.ok is ok, result
    if not ok:
        assert result.error.startswith(f"HTTP {status}, expected ")


async def test_keyword_present_and_absent(server, prober) -> None:
    base, _ = server
    assert (await check(prober, f"{base}/echo?text=all+good", {"keyword": "good"})).ok
    missing = await check(prober, f"{base}/echo?text=degraded+mode", {"keyword": "good"})
    assert not missing.ok and missing.error == hc.KEYWORD_MISSING
    assert (await check(prober, f"{base}/echo?text=all+good", {"absent_keyword": "error"})).ok
    present = await check(prober, f"{base}/echo?text=db+error+42", {"absent_keyword": "error"})
    assert not present.ok and present.error == hc.KEYWORD_PRESENT
    assert "42" not in present.error  # nothing the target sent is reported


@pytest.mark.parametrize(("path", "equals", "ok", "error"), [
    ("$.status", "ok", True, None),
    ("$.status", "down", False, hc.JSON_DIFFERS),
    ("$.count", 3, True, None),
    ("$.count", "3", True, None),  # a form's string matches the number
    ("$.healthy", True, True, None),
    ("$.count", True, False, hc.JSON_DIFFERS),  # 3 is not true, even in Python
    ("$.items[0].state", "on", True, None),
    ("$.missing", "x", False, hc.JSON_NO_MATCH),
])
async def test_json_path_equals(server, prober, path: str, equals: object, ok: bool, error: str | None) -> None:
    base, _ = server
    result = await check(prober, f"{base}/doc", {"json_path": path, "json_equals": equals})
    assert result.ok is ok and result.error == error, result


async def test_a_body_that_is_not_json_fails_the_json_condition(server, prober) -> None:
    base, _ = server
    result = await check(prober, f"{base}/echo?text=nope", {"json_path": "$.a", "json_equals": 1})
    assert not result.ok and result.error == hc.NOT_JSON


async def test_body_reads_are_capped(server, prober) -> None:
    base, _ = server
    result = await check(prober, f"{base}/huge", {"keyword": "ok"})
    assert not result.ok and result.error == hc.BODY_TOO_LARGE
    # a status-only condition does not read the body at all, so the same URL passes
    assert (await check(prober, f"{base}/huge", {"expected_status": ["200-299"]})).ok


async def test_plain_devices_keep_the_plain_probe(server, prober, monkeypatch) -> None:
    base, _ = server
    used: list[str] = []
    monkeypatch.setattr(prober.plain_http, "begin", lambda *a: (used.append("plain"), a[2](hc.ProbeResult(True, 1.0))))
    monkeypatch.setattr(prober.http, "begin", lambda *a: (used.append("full"), a[2](hc.ProbeResult(True, 1.0))))
    await prober.check("http", f"{base}/echo", 2)
    await prober.check("http", f"{base}/echo", 2, {"keyword": "x"})
    assert used == ["plain", "full"]
