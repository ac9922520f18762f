"""tcp: up when a TCP handshake to host:port completes within the timeout."""

from __future__ import annotations

from iot.checks.base import CheckKind, host_port_problem, split_host_port


class Tcp(CheckKind):
    name = "tcp"
    example = "gateway-1.example.com:502"
    description = "tcp: connect host:port"

    def _target_problem(self, target: str) -> str | None:
        return host_port_problem(target, self.example)

    def host(self, target: str) -> str:
        return split_host_port(target)[0]


KIND = Tcp()
