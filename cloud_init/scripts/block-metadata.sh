#!/bin/sh
# Keep containers away from the cloud metadata service (169.254.169.254), which serves user data
# and instance credentials to anything that asks. Host processes (cloud-init) are not affected:
# their packets leave through OUTPUT, container packets arrive through PREROUTING/FORWARD.
# Idempotent: every rule is checked (-C) before it is inserted (-I).
set -eu

metadata=169.254.169.254/32

ensure_rule() {
    table="$1"
    shift
    if ! iptables -t "$table" -C "$@" 2>/dev/null; then
        iptables -t "$table" -I "$@"
    fi
}

# Any routed packet (containers on Docker or CNI bridges) is dropped before conntrack.
ensure_rule raw PREROUTING -d "$metadata" -j DROP
# Docker's own hook, in case another tool rewrites the raw table.
if iptables -t filter -n -L DOCKER-USER >/dev/null 2>&1; then
    ensure_rule filter DOCKER-USER -d "$metadata" -j REJECT --reject-with icmp-port-unreachable
fi
