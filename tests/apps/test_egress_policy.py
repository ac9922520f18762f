"""The egress policy's decisions (iot.egress), without processes: every internal form is refused, public
addresses pass, the allow-list lets exactly its networks through, and connect-time resolution hands out
only the address it judged."""

from __future__ import annotations

import ipaddress

import aiohttp
import pytest
from aiohttp import web
from egress_targets import INTERNAL_HOSTS

from iot.egress import PUBLIC_ONLY, EgressPolicy, EgressRefused, EgressResolver

PUBLIC = ("93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "2a01:4f8::5", "::ffff:8.8.8.8",
          "64:ff9b::808:808", "2002:808:808::1")
STUB_NAMES = {"metadata.internal", "nomad.internal", "redis.internal", "md6.internal", "lo6.internal"}


@pytest.mark.parametrize("host", [h for h in INTERNAL_HOSTS if h not in STUB_NAMES])
def test_every_internal_form_is_refused_as_written(host: str) -> None:
    assert PUBLIC_ONLY.host_problem(host), host


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_pass(host: str) -> None:
    assert PUBLIC_ONLY.host_problem(host) is None
    address = ipaddress.ip_address(host)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    assert PUBLIC_ONLY.connect_address(host) == str(mapped or address)


def test_odd_numeric_spellings_are_refused_even_for_public_addresses() -> None:
    problem = PUBLIC_ONLY.host_problem("134744072")  # 8.8.8.8
    assert problem and "non-standard notation (8.8.8.8)" in problem and "a.b.c.d" in problem


def test_the_allow_list_admits_its_networks_in_every_spelling_and_nothing_else() -> None:
    policy = EgressPolicy.parse(" 127.0.0.0/8, ::1/128,172.30.0.0/24 ")
    for host in ("127.0.0.1", "::ffff:127.0.0.1", "::1", "172.30.0.9", "localhost"):
        assert policy.host_problem(host) is None, host
    assert policy.connect_address("::ffff:127.0.0.1") == "127.0.0.1"  # connect to the IPv4 it carries
    for host in ("172.30.1.9", "169.254.169.254", "10.0.1.11", "fd00::1", "2130706433"):
        assert policy.host_problem(host), host


def _edges() -> list[str]:
    """Both ends of every refused IPv4 network and their outside neighbours, plus allow-list edges."""
    from iot.egress import _V4_REFUSED

    out = []
    for network, _why in _V4_REFUSED:
        low, high = int(network.network_address), int(network.broadcast_address)
        out += [str(ipaddress.IPv4Address(v)) for v in (low, high, low - 1 if low else 0, min(high + 1, 2**32 - 1))]
    return out + ["172.30.0.0", "172.30.0.255", "172.30.1.0", "8.8.8.8", "255.255.255.255"]


@pytest.mark.parametrize("policy", [PUBLIC_ONLY, EgressPolicy.parse("172.30.0.0/24, ::1/128")], ids=["public", "allow"])
def test_the_fast_dotted_quad_verdict_equals_the_full_rules_at_every_range_edge(policy: EgressPolicy) -> None:
    # The monitor judges new device addresses with integer ranges (issue 13); they must say what the
    # ipaddress-based rules say, address by address.
    for host in _edges():
        expected = None if policy.refusal(ipaddress.ip_address(host)) else host
        try:
            got = EgressPolicy(policy.allow).connect_address(host)
        except EgressRefused:
            got = None
        assert got == expected, host


def test_a_bad_allow_list_names_the_entry_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not a CIDR; give networks like"):
        EgressPolicy.parse("127.0.0.0/8,10.0.0.0/33")


async def test_connect_time_resolution_refuses_names_of_internal_addresses() -> None:
    with pytest.raises(EgressRefused):
        await PUBLIC_ONLY.resolve("localhost")
    with pytest.raises(EgressRefused):
        await PUBLIC_ONLY.resolve("0x7f000001")
    with pytest.raises(OSError):
        await PUBLIC_ONLY.resolve("does-not-exist.invalid")
    assert await EgressPolicy.parse("127.0.0.0/8").resolve("localhost") == "127.0.0.1"
    with pytest.raises(EgressRefused):  # plain-http webhooks: allow-listed addresses only
        await PUBLIC_ONLY.resolve("1.1.1.1", allow_listed_only=True)


async def test_aiohttp_never_connects_where_the_resolver_refuses() -> None:
    hits: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        for policy, expected in ((PUBLIC_ONLY, None), (EgressPolicy.parse("127.0.0.0/8"), 200)):
            connector = aiohttp.TCPConnector(resolver=EgressResolver(policy), force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                try:
                    async with session.get(f"http://localhost:{port}/") as resp:
                        status = resp.status
                except aiohttp.ClientConnectorDNSError as exc:
                    assert isinstance(exc.os_error, EgressRefused)
                    status = None
            assert status == expected
        assert hits == ["/"]
    finally:
        await runner.cleanup()
