"""dns: resolve a name for one record type; up when there is an answer (containing `expected`, if set).

The query goes to `resolver` (a tenant's choice, judged by the egress policy like any target) or, when
unset, to the resolvers of the monitor's host. The name itself is only looked up, never connected to.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from iot.checks.base import CheckKind, is_host, split_host_port
from iot.inputs import control_character_problem

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS")


def resolver_address(resolver: str) -> tuple[str, int]:
    """'192.0.2.53', '192.0.2.53:5353', '[2001:db8::53]:53' or '2001:db8::53' -> (address, port)."""
    if is_host(resolver):
        return resolver, 53
    host, port = split_host_port(resolver)
    return host, int(port)


class DnsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    record_type: Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS"] = "A"
    expected: str = Field("", description="A value one answer must equal (e.g. '192.0.2.10', 'mail.example.com').")
    resolver: str = Field("", description="Resolver IP[:port] to ask (default: the monitor's resolvers).")

    @field_validator("expected")
    @classmethod
    def _expected(cls, value: str) -> str:
        problem = control_character_problem(value)
        if problem or len(value) > 255:
            raise ValueError(problem or "at most 255 characters")
        return value

    @field_validator("resolver")
    @classmethod
    def _resolver(cls, value: str) -> str:
        if not value:
            return value
        from ipaddress import ip_address

        try:
            host, port = resolver_address(value)
            ip_address(host)
            if not 1 <= port <= 65535:
                raise ValueError
        except ValueError:
            raise ValueError(f"{value[:60]!r} is not an IP address with an optional port, e.g. '192.0.2.53' "
                             "or '192.0.2.53:53' or '[2001:db8::53]:53'") from None
        return value


class Dns(CheckKind):
    name = "dns"
    example = "pump-1.example.com"
    description = "dns: resolve target name (record type, expected value, resolver)"
    Options = DnsOptions
    options_example = {"record_type": "MX", "expected": "mail.example.com"}

    def _target_problem(self, target: str) -> str | None:
        if not is_host(target) or ":" in target:
            return f"{target!r} is not a domain name, e.g. {self.example!r}"
        return None

    def host(self, target: str) -> str:
        return ""  # looked up, not connected to

    def egress_hosts(self, target, options):  # noqa: ANN001, ANN201
        resolver = options.get("resolver")
        return [resolver_address(resolver)[0]] if resolver else []


KIND = Dns()
