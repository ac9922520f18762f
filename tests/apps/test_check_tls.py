"""tls devices against a real local TLS server with short-lived certificates (cryptography): a certificate
with room is up, one expiring within warn_days is degraded (ok with a warning), an expired, untrusted or
wrong-name one fails, a non-TLS peer fails, and the egress policy is applied before connecting."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from egress_targets import TEST_EGRESS_ALLOW_CIDRS
from tls_certs import NOW, Pki

from iot import failures
from iot.egress import PUBLIC_ONLY, REFUSED, EgressPolicy
from iot.monitor.probes import Prober
from iot.monitor.probes.tls import CERT_EXPIRED, TlsProbe

LOOPBACK = EgressPolicy.parse(TEST_EGRESS_ALLOW_CIDRS)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
async def serve():
    servers: list[asyncio.Server] = []

    async def start(context: ssl.SSLContext | None) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)  # until the probe goes away
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        return f"127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


async def test_valid_soon_expiring_and_expired_certificates(pki, serve) -> None:
    probe = TlsProbe("127.0.0.3", LOOPBACK, ca_file=str(pki.ca_file))
    fine = await serve(pki.leaf("fine", not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=90)))
    soon = await serve(pki.leaf("soon", not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=5, hours=1)))
    expired = await serve(pki.leaf("old", not_before=NOW - dt.timedelta(days=10), not_after=NOW - dt.timedelta(hours=1)))

    up = await probe.check(fine, 2)
    assert up.ok and up.error is None and up.latency_ms is not None and up.latency_ms > 0
    warned = await probe.check(soon, 2)  # default warn_days 14
    assert warned.ok and warned.error == "TLS certificate expires in 5 days"
    assert (await probe.check(soon, 2, {"warn_days": 3})).error is None  # per device: 5 days is fine here
    assert (await probe.check(fine, 2, {"warn_days": 100})).error == "TLS certificate expires in 89 days"
    gone = await probe.check(expired, 2)
    assert not gone.ok and gone.error == CERT_EXPIRED


async def test_untrusted_wrong_name_and_not_tls_fail(pki, serve) -> None:
    probe = TlsProbe(None, LOOPBACK, ca_file=str(pki.ca_file))
    valid = {"not_before": NOW - dt.timedelta(days=1), "not_after": NOW + dt.timedelta(days=90)}
    stranger = await serve(pki.leaf("stranger", self_signed=True, **valid))
    other_name = await serve(pki.leaf("other", ip="127.0.0.9", **valid))
    plain = await serve(None)
    for target in (stranger, other_name):
        result = await probe.check(target, 2)
        assert not result.ok and result.error == failures.TLS_CERTIFICATE, (target, result)
    not_tls = await probe.check(plain, 1)
    assert not not_tls.ok and not_tls.error == failures.TLS_FAILED
    # the system store does not know the test CA
    assert (await TlsProbe(None, LOOPBACK).check(other_name, 2)).error == failures.TLS_CERTIFICATE


async def test_egress_is_judged_before_connecting_and_the_prober_dispatches_tls(pki, serve) -> None:
    target = await serve(pki.leaf("fine", not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=90)))
    refused = await TlsProbe(None, PUBLIC_ONLY, ca_file=str(pki.ca_file)).check(target, 2)
    assert not refused.ok and refused.error == REFUSED
    prober = Prober(None, concurrency=5, egress=LOOPBACK, tls_ca_file=str(pki.ca_file))
    await prober.start()
    try:
        assert (await prober.check("tls", target, 2, {"warn_days": 365})).error == "TLS certificate expires in 89 days"
        closed = await prober.check("tls", "127.0.0.1:9", 2)
        assert not closed.ok and closed.error == "Connection refused"
    finally:
        await prober.close()
