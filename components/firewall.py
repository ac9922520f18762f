"""Firewall rules as data (pure builders) plus their Hetzner and Linode shapes.

Only the public interface needs rules: Hetzner firewalls do not filter the private network, where
the agents listen (Consul 8300-8302/8500-8503, Nomad 4647/4648 bind to the private CIDR only).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pulumi_hcloud as hcloud
import pulumi_linode as linode

WORLD = frozenset({"0.0.0.0/0", "::/0"})
# Ports that must never be reachable from the internet at large.
ADMIN_PORTS = ("22", "4646")
CLUSTER_PORTS = ("4647", "4648", "8300", "8301", "8302", "8500", "8501", "8502", "8503")


@dataclass(frozen=True)
class Rule:
    protocol: str  # tcp | udp
    port: str
    sources: tuple[str, ...]
    description: str


def split_families(cidrs: Iterable[str]) -> tuple[list[str], list[str]]:
    v4, v6 = [], []
    for cidr in cidrs:
        (v4 if ipaddress.ip_network(cidr).version == 4 else v6).append(cidr)
    return sorted(v4), sorted(v6)


def _checked(rules: list[Rule]) -> list[Rule]:
    for rule in rules:
        if not rule.sources:
            raise ValueError(f"firewall rule {rule.description!r} has no sources")
        if rule.port in ADMIN_PORTS + CLUSTER_PORTS and WORLD & set(rule.sources):
            raise ValueError(f"firewall rule {rule.description!r} would open port {rule.port} to the world")
    return rules


def web_rules(cloudflare_cidrs: Sequence[str], ports: Sequence[str]) -> list[Rule]:
    sources = tuple(sorted(cloudflare_cidrs))
    return [Rule("tcp", port, sources, f"HTTP(S) {port} from Cloudflare only") for port in ports]


def cluster_rules(admin_cidrs: Sequence[str], cloudflare_cidrs: Sequence[str]) -> list[Rule]:
    """App nodes: 80/443 and Traefik's ping entrypoint (8082, probed by the Cloudflare load balancer
    monitor) from Cloudflare; SSH and the Nomad API from the admin networks."""
    admin = tuple(sorted(admin_cidrs))
    return _checked([
        *web_rules(cloudflare_cidrs, ("80", "443", "8082")),
        Rule("tcp", "22", admin, "SSH from admin networks"),
        Rule("tcp", "4646", admin, "Nomad API from admin networks"),
    ])


def monitor_rules(admin_cidrs: Sequence[str], cloudflare_cidrs: Sequence[str]) -> list[Rule]:
    """Monitor nodes: /health on 80 from Cloudflare, SSH from the admin networks, nothing else."""
    return _checked([
        *web_rules(cloudflare_cidrs, ("80",)),
        Rule("tcp", "22", tuple(sorted(admin_cidrs)), "SSH from admin networks"),
    ])


# The deploy access window (deploy/window.py): what a CI runner outside iot:adminCidrs needs for one job.
WINDOW_PORTS: dict[str, tuple[str, ...]] = {"cluster": ("22", "4646"), "monitor": ("22",)}


def window_rules(address: str, role: str) -> list[Rule]:
    """SSH (and on cluster nodes the Nomad API) from exactly one address; anything wider is refused."""
    network = ipaddress.ip_network(address, strict=True)
    if network.num_addresses != 1:
        raise ValueError(f"a deploy window admits exactly one address, not {address}")
    what = {"22": "SSH", "4646": "Nomad API"}
    return _checked([
        Rule("tcp", port, (str(network),), f"deploy window: {what[port]} from the CI runner")
        for port in WINDOW_PORTS[role]
    ])


def hcloud_rules(rules: Sequence[Rule]) -> list[hcloud.FirewallRuleArgs]:
    return [
        hcloud.FirewallRuleArgs(direction="in", protocol=r.protocol, port=r.port, source_ips=list(r.sources),
                                description=r.description)
        for r in rules
    ]


def linode_inbounds(rules: Sequence[Rule]) -> list[linode.FirewallInboundArgs]:
    inbounds = []
    for i, rule in enumerate(rules):
        v4, v6 = split_families(rule.sources)
        inbounds.append(linode.FirewallInboundArgs(
            label=f"allow-{rule.protocol}-{rule.port}-{i}", action="ACCEPT", protocol=rule.protocol.upper(),
            ports=rule.port, ipv4s=v4 or None, ipv6s=v6 or None, description=rule.description,
        ))
    return inbounds


def cloudflare_ip_ranges() -> tuple[list[str], list[str]]:
    """Cloudflare's published edge ranges (IPv4, IPv6), sorted; also Traefik's trustedIPs."""
    import pulumi_cloudflare as cloudflare  # slow import: only when the program needs it

    ranges = cloudflare.get_ip_ranges()
    return sorted(ranges.ipv4_cidrs), sorted(ranges.ipv6_cidrs)
