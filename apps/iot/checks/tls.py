"""tls: a TLS handshake to host:port (default 443) with a certificate the system trusts for that name;
`degraded` when it expires within `warn_days`, failed when expired, untrusted or not for that name."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from iot.checks.base import CheckKind, host_port_problem, is_host, split_host_port


class TlsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warn_days: int = Field(14, ge=1, le=365, description="Certificate expiry in fewer days than this: degraded.")


def tls_address(target: str) -> tuple[str, int]:
    """(host, port) of a tls target; a bare host means port 443."""
    if is_host(target):
        return target, 443
    host, port = split_host_port(target)
    return host, int(port)


class Tls(CheckKind):
    name = "tls"
    example = "pump-1.example.com:443"
    description = "tls: handshake with host[:port] (443), certificate expiry"
    Options = TlsOptions
    options_example = {"warn_days": 21}

    def _target_problem(self, target: str) -> str | None:
        if is_host(target):
            return None
        return host_port_problem(target, self.example)

    def host(self, target: str) -> str:
        return tls_address(target)[0]


KIND = Tls()
