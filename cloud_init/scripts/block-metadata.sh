#!/bin/sh
# Keep containers away from the cloud metadata services, which serve user data and instance
# credentials to anything that asks: 169.254.169.254 (Hetzner, Linode) and fd00:a9fe:a9fe::1
# (Linode over IPv6). Host processes (cloud-init) are not affected: their packets leave through
# OUTPUT, container packets arrive through PREROUTING/FORWARD.
# Idempotent: every rule is checked (-C) before it is inserted (-I).
set -eu

metadata_v4=169.254.169.254/32
metadata_v6=fd00:a9fe:a9fe::1/128

ensure_rule() {
    tool="$1"
    table="$2"
    shift 2
    if ! "$tool" -t "$table" -C "$@" 2>/dev/null; then
        "$tool" -t "$table" -I "$@"
    fi
}

# Any routed packet (containers on Docker or CNI bridges) is dropped before conntrack.
ensure_rule iptables raw PREROUTING -d "$metadata_v4" -j DROP
ensure_rule ip6tables raw PREROUTING -d "$metadata_v6" -j DROP
# Docker's own hook, in case another tool rewrites the raw table.
if iptables -t filter -n -L DOCKER-USER >/dev/null 2>&1; then
    ensure_rule iptables filter DOCKER-USER -d "$metadata_v4" -j REJECT --reject-with icmp-port-unreachable
fi
if ip6tables -t filter -n -L DOCKER-USER >/dev/null 2>&1; then
    ensure_rule ip6tables filter DOCKER-USER -d "$metadata_v6" -j REJECT --reject-with icmp6-port-unreachable
fi
