"""dns devices against a real DNS server on loopback (dnslib): every record type with a matching and a
mismatching expected value, a missing name and record, a silent resolver (timeout), and the resolver
address judged by the egress policy at probe time."""

from __future__ import annotations

import socket

import pytest
from dns_zone import start_zone_server
from egress_targets import TEST_EGRESS_ALLOW_CIDRS

from iot.checks import KINDS
from iot.egress import PUBLIC_ONLY, REFUSED, EgressPolicy
from iot.monitor.probes import Prober
from iot.monitor.probes.dns import NO_SUCH_NAME, DnsProbe, differs, no_records

LOOPBACK = EgressPolicy.parse(TEST_EGRESS_ALLOW_CIDRS)

@pytest.fixture(scope="module")
def resolver_address():
    server, address = start_zone_server()
    yield address
    server.stop()


@pytest.fixture
def silent_resolver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # receives queries, never answers
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.mark.parametrize(("name", "record_type", "expected", "ok"), [
    ("pump.example.com", "A", "", True),
    ("pump.example.com", "A", "192.0.2.11", True),
    ("pump.example.com", "A", "192.0.2.99", False),
    ("pump.example.com", "AAAA", "2001:db8:0::10", True),  # compared as addresses, not text
    ("pump.example.com", "AAAA", "2001:db8::11", False),
    ("alias.example.com", "CNAME", "pump.example.com", True),
    ("alias.example.com", "CNAME", "PUMP.example.com.", True),
    ("alias.example.com", "CNAME", "other.example.com", False),
    ("example.com", "MX", "mail.example.com", True),
    ("example.com", "MX", "20 backup.example.com", True),
    ("example.com", "MX", "10 backup.example.com", False),
    ("example.com", "TXT", "v=spf1 -all", True),
    ("example.com", "TXT", "site=berlin", True),  # strings of one record are joined
    ("example.com", "TXT", "v=spf1 +all", False),
    ("example.com", "NS", "ns2.example.com", True),
    ("example.com", "NS", "ns3.example.com", False),
])
async def test_record_types_and_expected_values(resolver_address, name, record_type, expected, ok) -> None:
    options = KINDS["dns"].options({"record_type": record_type, "expected": expected, "resolver": resolver_address})
    assert KINDS["dns"].target_problem(name) is None
    result = await DnsProbe("127.0.0.1", LOOPBACK).check(name, 2, options)
    assert result.ok is ok, result
    if ok:
        assert result.error is None and result.latency_ms is not None
    else:
        assert result.error == differs(record_type)


async def test_missing_names_records_and_a_silent_resolver(resolver_address, silent_resolver) -> None:
    probe = DnsProbe(None, LOOPBACK)
    nx = await probe.check("nope.example.com", 2, {"resolver": resolver_address})
    assert not nx.ok and nx.error == NO_SUCH_NAME
    no_mx = await probe.check("pump.example.com", 2, {"record_type": "MX", "resolver": resolver_address})
    assert not no_mx.ok and no_mx.error == no_records("MX")
    silent = await probe.check("pump.example.com", 0.5, {"resolver": silent_resolver})
    assert not silent.ok and silent.error == "timeout after 0.5s"


async def test_the_resolver_is_judged_by_the_egress_policy_and_the_prober_dispatches_dns(resolver_address) -> None:
    refused = await DnsProbe(None, PUBLIC_ONLY).check("pump.example.com", 2, {"resolver": resolver_address})
    assert not refused.ok and refused.error == REFUSED
    prober = Prober(None, concurrency=5, egress=LOOPBACK)
    await prober.start()
    try:
        result = await prober.check("dns", "pump.example.com", 2, {"expected": "192.0.2.10", "resolver": resolver_address})
        assert result.ok, result
    finally:
        await prober.close()
