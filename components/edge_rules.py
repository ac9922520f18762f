"""Cloudflare rule expressions for the zone's entry-point rulesets, as pure data (Rules language).

Only the stack that owns the zone declares them (`iot:cloudflare.ownsZone`): a zone has exactly one
entry-point ruleset per phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# What a monitor host may be asked at the edge: its health document, nothing else (never /metrics).
MONITOR_PUBLIC_PATH = "/health"
MONITOR_PUBLIC_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class EdgeRule:
    description: str
    expression: str


def host_in(hostnames: Sequence[str]) -> str:
    """`http.host in {"a" "b"}`; hostnames are validated DNS names, so they need no escaping."""
    return "http.host in {" + " ".join(f'"{h}"' for h in sorted(hostnames)) + "}"


def blocked_requests(monitor_hosts: Sequence[str], internal_hosts: Sequence[str]) -> list[EdgeRule]:
    """Requests the zone blocks (phase http_request_firewall_custom, action block)."""
    rules = []
    if monitor_hosts:
        methods = " ".join(f'"{m}"' for m in MONITOR_PUBLIC_METHODS)
        allowed = f'http.request.method in {{{methods}}} and http.request.uri.path eq "{MONITOR_PUBLIC_PATH}"'
        rules.append(EdgeRule(
            "monitor hosts: only GET/HEAD /health (never /metrics)",
            f"{host_in(monitor_hosts)} and not ({allowed})",
        ))
    if internal_hosts:
        rules.append(EdgeRule("worker and other internal hosts: never through the edge", host_in(internal_hosts)))
    return rules


def plain_http_origins(monitor_hosts: Sequence[str]) -> EdgeRule:
    """Monitor nodes answer plain HTTP on :80 (phase http_config_settings, ssl flexible for them only)."""
    return EdgeRule("monitor /health over HTTP to the origin", host_in(monitor_hosts))
