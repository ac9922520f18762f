"""icmp: up when an echo request to the host is answered within the timeout."""

from __future__ import annotations

from iot.checks.base import CheckKind, is_host


class Icmp(CheckKind):
    name = "icmp"
    example = "gateway-1.example.com"
    description = "icmp: ping host"

    def _target_problem(self, target: str) -> str | None:
        return None if is_host(target) else f"{target!r} is not a hostname or IP address, e.g. {self.example!r}"


KIND = Icmp()
