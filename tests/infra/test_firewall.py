"""Firewall rule builders: pure data, checked before any provider sees them."""

import pytest

from components.firewall import (
    Rule,
    _checked,
    cluster_rules,
    hcloud_rules,
    linode_inbounds,
    monitor_rules,
    split_families,
)

CF = ["173.245.48.0/20", "2400:cb00::/32"]
ADMIN = ["198.51.100.7/32", "2001:db8::/48"]


def test_cluster_rules_open_web_to_cloudflare_and_admin_ports_to_admins():
    rules = {(r.port, r.sources) for r in cluster_rules(ADMIN, CF)}
    assert rules == {
        ("80", tuple(sorted(CF))), ("443", tuple(sorted(CF))), ("8082", tuple(sorted(CF))),
        ("22", tuple(sorted(ADMIN))), ("4646", tuple(sorted(ADMIN))),
    }


def test_monitor_rules_allow_health_and_ssh_only():
    assert sorted(r.port for r in monitor_rules(ADMIN, CF)) == ["22", "80"]


@pytest.mark.parametrize("port", ["22", "4646", "4647", "4648", "8300", "8301", "8302", "8500", "8501", "8503"])
@pytest.mark.parametrize("world", ["0.0.0.0/0", "::/0"])
def test_opening_admin_or_cluster_ports_to_the_world_is_refused(port, world):
    with pytest.raises(ValueError, match=f"would open port {port} to the world"):
        _checked([Rule("tcp", port, (world,), "oops")])


def test_rule_without_sources_is_refused():
    with pytest.raises(ValueError, match="has no sources"):
        cluster_rules([], CF)


def test_provider_shapes():
    (web, ssh) = monitor_rules(ADMIN, CF)
    args = hcloud_rules([web])[0]
    assert (args.direction, args.protocol, args.port, args.source_ips) == ("in", "tcp", "80", sorted(CF))
    inbound = linode_inbounds([ssh])[0]
    assert (inbound.action, inbound.protocol, inbound.ports) == ("ACCEPT", "TCP", "22")
    assert (inbound.ipv4s, inbound.ipv6s) == (["198.51.100.7/32"], ["2001:db8::/48"])


def test_split_families():
    assert split_families(CF + ADMIN) == (["173.245.48.0/20", "198.51.100.7/32"], ["2001:db8::/48", "2400:cb00::/32"])
