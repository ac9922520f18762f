#!/bin/bash
# Make Consul's and Nomad's ACLs match the desired state, then wait until Nomad has a leader and
# every client node is ready. Runs on one server over SSH after every rollout; safe to re-run, also
# after a partial failure: every policy and token is created or updated (upsert), never created twice.
#   Consul: policies from /etc/iot/consul-policies/<name>.json (as iot-<name>); tokens with the
#           pre-generated secrets below, found by their secret (GET /v1/acl/token/self).
#   Nomad:  ACL bootstrap with the pre-generated management token (once); policies from
#           /etc/iot/nomad-policies/<name>.hcl (as iot-<name>, `nomad acl policy apply` is an upsert);
#           client tokens with pre-generated accessor and secret ids (POST /v1/acl/token upserts).
# A lookup that fails for any reason other than "not found" is retried, then reported: it never
# leads to a second create.
# Usage: iot-cluster-bootstrap <expected-ready-nodes>
# stdin, one per line: consul management token, consul agent token, nomad's consul token, consul
# catalog-read token (Traefik), nomad management token, nomad deployer accessor id, nomad deployer
# secret, nomad operator accessor id, nomad operator secret. Tokens never appear in a process
# argument or in this script's output: request bodies go to curl on stdin, tokens in headers read
# from a pipe.
set -euo pipefail

expected_nodes="${1:?usage: iot-cluster-bootstrap <expected-ready-nodes>}"
deadline_seconds="${IOT_BOOTSTRAP_TIMEOUT:-900}"
retry_pause="${IOT_RETRY_PAUSE:-3}"
etc="${IOT_ETC:-/etc/iot}"

mapfile -t ids
uuid_re='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
valid=0
for value in "${ids[@]}"; do
    if [[ "$value" =~ $uuid_re ]]; then
        valid=$((valid + 1))
    fi
done
if [ "${#ids[@]}" -ne 9 ] || [ "$valid" -ne 9 ]; then
    echo "iot-cluster-bootstrap: stdin must carry 9 ACL ids (UUIDs), one per line; got ${#ids[@]} line(s)" >&2
    exit 2
fi
consul_management_token="${ids[0]}" consul_agent_token="${ids[1]}" nomad_consul_token="${ids[2]}"
catalog_read_token="${ids[3]}" nomad_management_token="${ids[4]}" deployer_accessor="${ids[5]}"
deployer_secret="${ids[6]}" operator_accessor="${ids[7]}" operator_secret="${ids[8]}"
unset ids

export CONSUL_HTTP_ADDR=https://127.0.0.1:8501
export CONSUL_CACERT="$etc/consul.d/tls/ca.pem"
export CONSUL_HTTP_TOKEN="$consul_management_token"
export NOMAD_ADDR=https://127.0.0.1:4646
export NOMAD_CACERT="$etc/nomad.d/tls/ca.pem"
export NOMAD_CLIENT_CERT="$etc/nomad.d/tls/node.pem"
export NOMAD_CLIENT_KEY="$etc/nomad.d/tls/node-key.pem"

end=$((SECONDS + deadline_seconds))
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

fail() {
    echo "iot-cluster-bootstrap: $*" >&2
    exit 1
}

# Poll a condition until it holds or the shared deadline passes.
wait_for() {
    local what="$1"
    shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then
            echo "timed out after ${deadline_seconds}s waiting for ${what}" >&2
            return 1
        fi
        sleep "$retry_pause"
    done
    echo "ok: ${what}"
}

# api <consul|nomad> <token> <method> <path> [request body]
# Sets $status (000 when no HTTP answer) and leaves the answer in $workdir/body. No answer and 5xx
# are retried a few times: only a definite answer (2xx, 4xx) ends the call early.
status=""
api() {
    local service="$1" token="$2" method="$3" path="$4" request="${5:-}" attempt header base
    local -a tls data=()
    if [ -n "$request" ]; then
        data=(--data-binary @-)
    fi
    if [ "$service" = consul ]; then
        header=X-Consul-Token base="$CONSUL_HTTP_ADDR" tls=(--cacert "$CONSUL_CACERT")
    else
        header=X-Nomad-Token base="$NOMAD_ADDR"
        tls=(--cacert "$NOMAD_CACERT" --cert "$NOMAD_CLIENT_CERT" --key "$NOMAD_CLIENT_KEY")
    fi
    for attempt in 1 2 3 4 5; do
        status="$(printf '%s' "$request" | curl -sS -o "$workdir/body" -w '%{http_code}' "${tls[@]}" \
            -H @<(printf '%s: %s\n' "$header" "$token") -X "$method" "${data[@]}" "$base$path")" || status=000
        case "$status" in
            2?? | 4??) return 0 ;;
        esac
        if [ "$attempt" -lt 5 ]; then
            sleep "$retry_pause"
        fi
    done
}

answer() { head -c 300 "$workdir/body" 2>/dev/null | tr '\n' ' '; }

# An answer that says the object does not exist (Consul answers 403 "ACL not found" for unknown tokens).
not_found() {
    [ "$status" = 404 ] || { [ "$status" = 403 ] && grep -qi 'not found' "$workdir/body"; }
}

# Reads JSON from the answer; prints a top-level field (lists of {Name} objects as sorted names).
answer_field() {
    python3 -c '
import json, sys
value = json.load(open(sys.argv[1])).get(sys.argv[2])
if isinstance(value, list):
    value = ",".join(sorted(v.get("Name", "") if isinstance(v, dict) else str(v) for v in value))
print("" if value is None else value)
' "$workdir/body" "$1"
}

# {"Name": ..., "Description": ..., "Rules": <file content>} for a Consul policy.
policy_body() {
    python3 -c '
import json, sys
print(json.dumps({"Name": sys.argv[1], "Description": sys.argv[2], "Rules": open(sys.argv[3]).read()}))
' "$1" "$2" "$3"
}

consul_token_works() {
    CONSUL_HTTP_TOKEN="$1" consul acl token read -self
}

ensure_consul_policy() {
    local name="$1" file="$2" id description="managed by iot-cluster-bootstrap"
    api consul "$consul_management_token" GET "/v1/acl/policy/name/$name"
    if [ "$status" = 200 ]; then
        id="$(answer_field ID)"
        if [ "$(answer_field Rules)" = "$(cat "$file")" ]; then
            echo "ok: Consul policy $name unchanged"
            return
        fi
        api consul "$consul_management_token" PUT "/v1/acl/policy/$id" "$(policy_body "$name" "$description" "$file")"
        [ "$status" = 200 ] || fail "could not update Consul policy $name: HTTP $status $(answer)"
        echo "ok: Consul policy $name updated"
    elif not_found; then
        api consul "$consul_management_token" PUT /v1/acl/policy "$(policy_body "$name" "$description" "$file")"
        [ "$status" = 200 ] || fail "could not create Consul policy $name: HTTP $status $(answer)"
        echo "ok: Consul policy $name created"
    else
        fail "could not read Consul policy $name: HTTP $status $(answer)"
    fi
}

# A Consul token is identified by its pre-generated secret (tokens created by earlier versions of
# this script have Consul-generated accessor ids, so the secret is the one stable key).
ensure_consul_token() {
    local secret="$1" policy="$2" description="$3" accessor
    api consul "$secret" GET /v1/acl/token/self
    if [ "$status" = 200 ]; then
        accessor="$(answer_field AccessorID)"
        if [ "$(answer_field Policies)" = "$policy" ] && [ "$(answer_field Description)" = "$description" ]; then
            echo "ok: Consul token '$description' unchanged"
            return
        fi
        api consul "$consul_management_token" PUT "/v1/acl/token/$accessor" \
            "$(printf '{"AccessorID":"%s","Description":"%s","Policies":[{"Name":"%s"}]}' "$accessor" "$description" "$policy")"
        [ "$status" = 200 ] || fail "could not update Consul token '$description': HTTP $status $(answer)"
        echo "ok: Consul token '$description' updated"
    elif not_found; then
        api consul "$consul_management_token" PUT /v1/acl/token \
            "$(printf '{"SecretID":"%s","Description":"%s","Policies":[{"Name":"%s"}]}' "$secret" "$description" "$policy")"
        [ "$status" = 200 ] || fail "could not create Consul token '$description': HTTP $status $(answer)"
        echo "ok: Consul token '$description' created"
    else
        fail "could not look up Consul token '$description': HTTP $status $(answer)"
    fi
}

nomad_has_leader() {
    local leader
    leader="$(nomad operator api /v1/status/leader)"
    [ -n "$leader" ] && [ "$leader" != '""' ]
}

nomad_management_works() {
    NOMAD_TOKEN="$nomad_management_token" nomad acl token self
}

ensure_nomad_acl_bootstrap() {
    local output
    if nomad_management_works >/dev/null 2>&1; then
        echo "ok: Nomad ACLs already bootstrapped"
        return
    fi
    if output="$(printf '%s' "$nomad_management_token" | nomad acl bootstrap - 2>&1 >/dev/null)"; then
        echo "ok: Nomad ACLs bootstrapped"
        return
    fi
    # The first check may have failed for a passing reason: the token working now settles it.
    if wait_for "Nomad management token" nomad_management_works; then
        return
    fi
    fail "Nomad ACL bootstrap failed (${output##*$'\n'}) and the management token does not work; if the ACLs were bootstrapped with another token, reset them (nomad acl bootstrap reset)"
}

ensure_nomad_policy() {
    local name="$1" file="$2" attempt
    for attempt in 1 2 3 4 5; do
        if NOMAD_TOKEN="$nomad_management_token" nomad acl policy apply \
            -description "managed by iot-cluster-bootstrap" "$name" "$file" >/dev/null; then
            echo "ok: Nomad policy $name applied"
            return
        fi
        if [ "$attempt" -lt 5 ]; then
            sleep "$retry_pause"
        fi
    done
    fail "could not apply Nomad policy $name"
}

ensure_nomad_token() {
    local name="$1" accessor="$2" secret="$3" policy="$4"
    api nomad "$nomad_management_token" POST /v1/acl/token \
        "$(printf '{"AccessorID":"%s","SecretID":"%s","Name":"%s","Type":"client","Policies":["%s"],"Global":false}' \
            "$accessor" "$secret" "$name" "$policy")"
    [ "$status" = 200 ] || fail "could not create or update Nomad token $name: HTTP $status $(answer)"
    echo "ok: Nomad token $name in place"
}

nomad_ready_nodes() {
    NOMAD_TOKEN="$nomad_management_token" nomad node status \
        -t '{{range .}}{{if eq .Status "ready"}}{{println .ID}}{{end}}{{end}}' | grep -c .
}

enough_nodes_ready() {
    [ "$(nomad_ready_nodes)" -ge "$expected_nodes" ]
}

wait_for "Consul leader and management token" consul_token_works "$consul_management_token"
for file in "$etc"/consul-policies/*.json; do
    ensure_consul_policy "iot-$(basename "$file" .json)" "$file"
done
ensure_consul_token "$consul_agent_token" iot-agent "consul agents"
ensure_consul_token "$nomad_consul_token" iot-nomad "nomad agents"
ensure_consul_token "$catalog_read_token" iot-catalog-read "traefik consul catalog"

wait_for "Nomad leader" nomad_has_leader
ensure_nomad_acl_bootstrap
for file in "$etc"/nomad-policies/*.hcl; do
    ensure_nomad_policy "iot-$(basename "$file" .hcl)" "$file"
done
ensure_nomad_token iot-deployer "$deployer_accessor" "$deployer_secret" iot-deployer
ensure_nomad_token iot-operator "$operator_accessor" "$operator_secret" iot-operator
wait_for "${expected_nodes} ready Nomad client node(s)" enough_nodes_ready
