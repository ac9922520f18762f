"""DNS probes: ask a resolver for one record type of the target name (dnspython, asynchronous).

The resolver is the device's `resolver` option (an IP judged by the egress policy at every check, like
any target) or, unset, the monitor host's own resolvers. Up when the answer holds a record (equal to
`expected`, when given). Texts are fixed: answers are compared, never reported.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from iot import failures
from iot.checks.dns import resolver_address
from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.monitor.probes.common import ProbeResult, TaskProbe, elapsed_ms, failed

NO_SUCH_NAME = "name does not exist (NXDOMAIN)"
NO_RESOLVER_ANSWER = "no resolver answered"


def no_records(record_type: str) -> str:
    return f"no {record_type} record"


def differs(record_type: str) -> str:
    return f"no {record_type} record equals the expected value"


def _name(text: str) -> str:
    return text.rstrip(".").lower()


def record_texts(record_type: str, rdata: Any) -> set[str]:
    """The forms of one answer an `expected` value may take ('mail.example.com' and '10 mail.example.com')."""
    if record_type in ("A", "AAAA"):
        return {str(ipaddress.ip_address(rdata.address))}
    if record_type == "MX":
        exchange = _name(rdata.exchange.to_text())
        return {exchange, f"{rdata.preference} {exchange}"}
    if record_type == "TXT":
        return {b"".join(rdata.strings).decode("utf-8", "replace")}
    return {_name(rdata.target.to_text())}  # CNAME, NS


def expected_forms(record_type: str, expected: str) -> set[str]:
    if record_type in ("A", "AAAA"):
        try:
            return {str(ipaddress.ip_address(expected.strip()))}
        except ValueError:
            return {expected}
    if record_type == "TXT":
        return {expected}
    return {_name(" ".join(expected.split()))}


class DnsProbe(TaskProbe):
    def __init__(self, source_address: str | None = None, egress: EgressPolicy = PUBLIC_ONLY) -> None:
        self._source = source_address
        self._egress = egress
        self._system: dns.asyncresolver.Resolver | None = None
        super().__init__()

    def _resolver(self, choice: str) -> dns.asyncresolver.Resolver:
        if not choice:
            if self._system is None:
                self._system = dns.asyncresolver.Resolver()  # the host's /etc/resolv.conf: operator's choice
            return self._system
        address, port = resolver_address(choice)
        resolver = dns.asyncresolver.Resolver(configure=False)
        # The tenant chose this address: judged now (EgressRefused, an OSError, fails the check).
        resolver.nameservers = [self._egress.connect_address(address)]
        resolver.port = port
        return resolver

    async def _check(self, target: str, timeout_s: float, options: dict[str, Any]) -> ProbeResult:
        record_type = str(options.get("record_type", "A"))
        expected = str(options.get("expected", ""))
        start = time.perf_counter()
        try:
            resolver = self._resolver(str(options.get("resolver", "")))
            answer = await resolver.resolve(dns.name.from_text(target), dns.rdatatype.from_text(record_type),
                                            lifetime=timeout_s, source=self._source, search=False)
        except dns.resolver.NXDOMAIN:
            return failed(NO_SUCH_NAME)
        except dns.resolver.NoAnswer:
            return failed(no_records(record_type))
        except dns.exception.Timeout:
            return failed(f"timeout after {timeout_s:g}s")
        except dns.resolver.NoNameservers:
            return failed(NO_RESOLVER_ANSWER)
        except OSError as exc:
            return failed(failures.describe(exc))
        except dns.exception.DNSException:
            return failed(failures.FAILED)
        latency = elapsed_ms(start)
        if expected:
            wanted = expected_forms(record_type, expected)
            if not any(wanted & record_texts(record_type, rdata) for rdata in answer):
                return ProbeResult(False, latency, differs(record_type))
        return ProbeResult(True, latency)
