#!/bin/bash
# Take this node out of the cluster before its server is deleted (the delete step of its
# `-leave` command): move its allocations away, then leave Nomad's and Consul's Raft cleanly
# instead of leaving a failed voter behind.
#   1. drain the Nomad client (skipped when no other node is ready to take the allocations);
#   2. stop Nomad, then force-leave (-prune) its server from a peer: the cleanup Nomad's docs give
#      for a server that is gone for good;
#   3. `consul leave`: Consul's graceful leave, which removes the server from the Raft peers.
# Best effort by design: a step that fails is reported and the next one still runs, and both
# agents run autopilot with cleanup_dead_servers as the backstop. A node that cannot be reached at
# all makes this step fail; see README "Day-2 operations".
set -uo pipefail

etc="${IOT_ETC:-/etc/iot}"
drain_deadline="${IOT_DRAIN_DEADLINE:-5m}"

export CONSUL_HTTP_ADDR=https://127.0.0.1:8501
export CONSUL_CACERT="$etc/consul.d/tls/ca.pem"
export NOMAD_ADDR=https://127.0.0.1:4646
export NOMAD_CACERT="$etc/nomad.d/tls/ca.pem"
export NOMAD_CLIENT_CERT="$etc/nomad.d/tls/node.pem"
export NOMAD_CLIENT_KEY="$etc/nomad.d/tls/node-key.pem"
CONSUL_HTTP_TOKEN="$(cat "$etc/tokens/consul-management")"
NOMAD_TOKEN="$(cat "$etc/tokens/nomad-management")"
export CONSUL_HTTP_TOKEN NOMAD_TOKEN

node="" node_ip="" server_ips=""
while IFS='=' read -r key value; do
    case "$key" in
        NODE_NAME) node="$value" ;;
        NODE_IP) node_ip="$value" ;;
        SERVER_IPS) server_ips="$value" ;;
    esac
done <"$etc/cluster.env"

warnings=0
warn() {
    echo "warning: $node: $*" >&2
    warnings=$((warnings + 1))
}

other_ready_nodes="$(nomad node status -t '{{ range . }}{{ if and (eq .Status "ready") (eq .SchedulingEligibility "eligible") }}{{ println .Name }}{{ end }}{{ end }}' 2>/dev/null | grep -cvx "$node" || true)"
if [ "${other_ready_nodes:-0}" -gt 0 ]; then
    echo "draining Nomad client $node (deadline $drain_deadline)"
    nomad node drain -self -enable -yes -deadline "$drain_deadline" >/dev/null || warn "drain did not finish"
else
    echo "no other ready Nomad client: $node is not drained"
fi

systemctl disable --now nomad.service || warn "could not stop nomad.service"
peer=""
for ip in $server_ips; do
    if [ "$ip" != "$node_ip" ]; then
        peer="$ip"
        break
    fi
done
if [ -n "$peer" ]; then
    NOMAD_ADDR="https://$peer:4646" nomad server force-leave -prune "$node.global" ||
        warn "Nomad force-leave via $peer failed; autopilot removes the dead server"
    echo "ok: Nomad server $node.global left (via $peer)"
else
    echo "no peer server: $node was the last Nomad server"
fi

consul leave || warn "consul leave failed; autopilot removes the dead server"
systemctl disable consul.service || warn "could not disable consul.service"
echo "ok: $node left the cluster ($warnings warning(s))"
