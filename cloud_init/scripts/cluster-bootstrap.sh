#!/bin/bash
# Bootstrap Consul and Nomad ACLs with pre-generated tokens (idempotent), then wait until Nomad
# has a leader and every client node is ready. Runs on the first server over SSH.
# Usage: iot-cluster-bootstrap <expected-ready-nodes>
# stdin, one per line: consul management token, consul agent token, nomad's consul token,
# consul catalog-read token (Traefik), nomad bootstrap token. Tokens never appear in arguments of this script or in its output.
set -euo pipefail

expected_nodes="${1:?usage: iot-cluster-bootstrap <expected-ready-nodes>}"
deadline_seconds="${IOT_BOOTSTRAP_TIMEOUT:-900}"

IFS= read -r consul_management_token
IFS= read -r consul_agent_token
IFS= read -r nomad_consul_token
IFS= read -r catalog_read_token
IFS= read -r nomad_bootstrap_token

export CONSUL_HTTP_ADDR=https://127.0.0.1:8501
export CONSUL_CACERT=/etc/iot/consul.d/tls/ca.pem
export CONSUL_HTTP_TOKEN="$consul_management_token"
export NOMAD_ADDR=https://127.0.0.1:4646
export NOMAD_CACERT=/etc/iot/nomad.d/tls/ca.pem
export NOMAD_CLIENT_CERT=/etc/iot/nomad.d/tls/node.pem
export NOMAD_CLIENT_KEY=/etc/iot/nomad.d/tls/node-key.pem

end=$((SECONDS + deadline_seconds))

# Poll a condition until it holds or the shared deadline passes.
wait_for() {
    local what="$1"
    shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then
            echo "timed out after ${deadline_seconds}s waiting for ${what}" >&2
            return 1
        fi
        sleep 3
    done
    echo "ok: ${what}"
}

consul_token_works() {
    CONSUL_HTTP_TOKEN="$1" consul acl token read -self
}

ensure_consul_policy() {
    local name="$1" rules_file="$2"
    consul acl policy read -name "$name" >/dev/null 2>&1 ||
        consul acl policy create -name "$name" -rules "@${rules_file}" >/dev/null
}

# Tokens with a chosen secret are created through the HTTP API: the secret travels in the request body
# on stdin and the management token in a header read from a pipe, never in a process argument
# (`consul acl token create -secret` would show it to every local user in /proc/<pid>/cmdline).
ensure_consul_token() {
    local secret="$1" policy="$2" description="$3"
    consul_token_works "$secret" >/dev/null 2>&1 && return 0
    printf '{"SecretID":"%s","Description":"%s","Policies":[{"Name":"%s"}]}' "$secret" "$description" "$policy" |
        curl -sSf --cacert "$CONSUL_CACERT" -H @<(printf 'X-Consul-Token: %s\n' "$CONSUL_HTTP_TOKEN") \
            -X PUT --data-binary @- "${CONSUL_HTTP_ADDR}/v1/acl/token" >/dev/null
}

nomad_has_leader() {
    local leader
    leader="$(nomad operator api /v1/status/leader)"
    [ -n "$leader" ] && [ "$leader" != '""' ]
}

nomad_ready_nodes() {
    NOMAD_TOKEN="$nomad_bootstrap_token" nomad node status \
        -t '{{range .}}{{if eq .Status "ready"}}{{println .ID}}{{end}}{{end}}' | grep -c .
}

enough_nodes_ready() {
    [ "$(nomad_ready_nodes)" -ge "$expected_nodes" ]
}

wait_for "Consul leader and management token" consul_token_works "$consul_management_token"
ensure_consul_policy iot-agent /etc/iot/consul-policies/agent.json
ensure_consul_policy iot-nomad /etc/iot/consul-policies/nomad.json
ensure_consul_policy iot-catalog-read /etc/iot/consul-policies/catalog-read.json
ensure_consul_token "$consul_agent_token" iot-agent "consul agents"
ensure_consul_token "$nomad_consul_token" iot-nomad "nomad agents"
ensure_consul_token "$catalog_read_token" iot-catalog-read "traefik consul catalog"

wait_for "Nomad leader" nomad_has_leader
if NOMAD_TOKEN="$nomad_bootstrap_token" nomad acl token self >/dev/null 2>&1; then
    echo "ok: Nomad ACLs already bootstrapped"
else
    printf '%s' "$nomad_bootstrap_token" | nomad acl bootstrap - >/dev/null
    echo "ok: Nomad ACLs bootstrapped"
fi
wait_for "${expected_nodes} ready Nomad client node(s)" enough_nodes_ready
