"""Which hostname goes where at the Cloudflare edge (DESIGN §2, §4.2), as pure data.

The Edge component creates exactly what `edge_layout` describes; the offline plan's edge.md then
shows the Cloudflare resources it declared (hostnames -> pools -> origins).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# Fixed single-label public hosts (DESIGN §2); the apex and the `*` wildcard (tenants) come on top.
EXPLICIT_HOSTS = ("www", "docs", "tracker", "collect")
# Hosts Traefik serves only on its internal entrypoint (private network, or an SSH tunnel for admins):
# they get no DNS record, and the owning stack's edge rule blocks them should a wildcard ever catch them.
INTERNAL_HOSTS = ("worker",)

TargetKind = Literal["load_balancer", "cname", "nodes", "monitor"]


@dataclass(frozen=True)
class NodeRef:
    name: str
    location: str


@dataclass(frozen=True)
class Pool:
    location: str
    origins: tuple[str, ...]  # node names, sorted (the provider drifts on unsorted origins)


@dataclass(frozen=True)
class HostTarget:
    hostname: str
    kind: TargetKind
    targets: tuple[str, ...]  # pool locations, a CNAME target, node names, or the monitor name


@dataclass(frozen=True)
class EdgeLayout:
    domain: str
    load_balancer: bool
    pools: tuple[Pool, ...]  # first pool = fallback
    hosts: tuple[HostTarget, ...]

    def host(self, hostname: str) -> HostTarget:
        for host in self.hosts:
            if host.hostname == hostname:
                return host
        raise KeyError(hostname)


def routed_hostnames(domain: str) -> tuple[str, ...]:
    """Hostnames Traefik serves: the apex, the tenant wildcard and the explicit hosts."""
    return (domain, f"*.{domain}", *(f"{label}.{domain}" for label in EXPLICIT_HOSTS))


def public_hostnames(domain: str, monitor_names: Sequence[str], publish_monitors: bool = True) -> tuple[str, ...]:
    """Every DNS name one stack publishes in its zone (load balancers and records alike)."""
    monitors = tuple(f"{name}.{domain}" for name in monitor_names) if publish_monitors else ()
    return (*routed_hostnames(domain), *monitors)


def pools_by_location(nodes: Sequence[NodeRef]) -> tuple[Pool, ...]:
    """One pool per location, in first-seen (config) order, origins sorted by node name."""
    locations: dict[str, list[str]] = {}
    for node in nodes:
        locations.setdefault(node.location, []).append(node.name)
    return tuple(Pool(location, tuple(sorted(names))) for location, names in locations.items())


def edge_layout(
    domain: str,
    nodes: Sequence[NodeRef],
    monitor_names: Sequence[str],
    load_balancer: bool,
    publish_monitors: bool = True,
) -> EdgeLayout:
    """Hostnames -> load balancers/pools or records -> origins for one stack.

    `publish_monitors=False` (a stack that does not own its zone): monitor hosts need the zone's
    config rule, which only the owning stack declares, so they get no record.
    """
    if not nodes:
        raise ValueError("the edge needs at least one app node; check iot:cluster.locations")
    names = [n.name for n in nodes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"app node names must be unique, got duplicates {duplicates}")
    clash = sorted(set(monitor_names) & set(EXPLICIT_HOSTS + INTERNAL_HOSTS))
    if clash:
        raise ValueError(f"monitor names {clash} clash with fixed hostnames; rename the monitors")
    hosts: list[HostTarget] = []
    if load_balancer:
        pools = pools_by_location(nodes)
        locations = tuple(p.location for p in pools)
        hosts.append(HostTarget(domain, "load_balancer", locations))
        hosts.append(HostTarget(f"*.{domain}", "load_balancer", locations))
        # Explicit hosts shadow the wildcard LB, so they alias the apex LB to stay balanced.
        hosts.extend(HostTarget(f"{label}.{domain}", "cname", (domain,)) for label in EXPLICIT_HOSTS)
    else:
        pools = ()
        all_nodes = tuple(sorted(names))
        hosts.extend(HostTarget(hostname, "nodes", all_nodes) for hostname in routed_hostnames(domain))
    if publish_monitors:
        hosts.extend(HostTarget(f"{name}.{domain}", "monitor", (name,)) for name in monitor_names)
    return EdgeLayout(domain=domain, load_balancer=load_balancer, pools=pools, hosts=tuple(hosts))
