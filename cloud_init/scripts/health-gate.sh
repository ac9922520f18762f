#!/bin/bash
# Health gate of one cluster node, run after its agents were (re)started or reloaded. The next node
# is touched only once this passes (components/cluster.py chains the steps), so a rollout stops at
# the first unhealthy node instead of taking the quorum down.
# Passes when, on this node:
#   - docker, consul and nomad are active, with the pinned Consul/Nomad packages and CNI plugins;
#   - its Consul member is alive and Consul's Raft has a leader with every configured server a voter;
#   - its Nomad server and client agents report healthy, and Nomad's Raft has a leader with every
#     configured server a peer.
# Polls until $IOT_GATE_TIMEOUT seconds (default 300) pass, then fails naming the node and every
# problem it still sees. Servers not in the configuration (a node being removed) are tolerated.
# The Nomad checks use endpoints that need no ACL token (agent health, status/leader, status/peers),
# so the gate also works on a new cluster whose Nomad ACLs are not bootstrapped yet; Consul's
# management token exists from the first leader election on (acl.tokens.initial_management).
# Reads /etc/iot/cluster.env (NODE_NAME, SERVER_IPS), /etc/iot/versions.env and the Consul
# management token in /etc/iot/tokens/ (root only); prints no token.
set -euo pipefail

etc="${IOT_ETC:-/etc/iot}"
timeout="${IOT_GATE_TIMEOUT:-300}"
interval="${IOT_GATE_INTERVAL:-5}"

export CONSUL_HTTP_ADDR=https://127.0.0.1:8501
export CONSUL_CACERT="$etc/consul.d/tls/ca.pem"
export NOMAD_ADDR=https://127.0.0.1:4646
export NOMAD_CACERT="$etc/nomad.d/tls/ca.pem"
export NOMAD_CLIENT_CERT="$etc/nomad.d/tls/node.pem"
export NOMAD_CLIENT_KEY="$etc/nomad.d/tls/node-key.pem"
CONSUL_HTTP_TOKEN="$(cat "$etc/tokens/consul-management")"
export CONSUL_HTTP_TOKEN
cni_dir="${IOT_CNI_DIR:-/opt/cni/bin}"

node="" server_ips=""
consul_version="" nomad_version="" cni_version=""
while IFS='=' read -r key value; do
    case "$key" in
        NODE_NAME) node="$value" ;;
        SERVER_IPS) server_ips="$value" ;;
        CONSUL_VERSION) consul_version="$value" ;;
        NOMAD_VERSION) nomad_version="$value" ;;
        CNI_VERSION) cni_version="$value" ;;
    esac
done < <(cat "$etc/cluster.env" "$etc/versions.env")
if [ -z "$node" ] || [ -z "$server_ips" ]; then
    echo "health gate: $etc/cluster.env lacks NODE_NAME or SERVER_IPS" >&2
    exit 2
fi

problems=()
problem() { problems+=("$*"); }

check_units() {
    local unit state
    for unit in docker.service consul.service nomad.service; do
        state="$(systemctl is-active "$unit" 2>/dev/null || true)"
        [ "$state" = active ] || problem "$unit is ${state:-unknown}"
    done
}

check_versions() {
    local package wanted installed marker
    for package in consul nomad; do
        if [ "$package" = consul ]; then wanted="$consul_version-1"; else wanted="$nomad_version-1"; fi
        installed="$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || true)"
        [ "$installed" = "$wanted" ] || problem "$package ${installed:-not installed} is installed, $wanted is pinned"
    done
    marker="$(cat "$cni_dir/.iot-version" 2>/dev/null || true)"
    [ "$marker" = "$cni_version" ] || problem "CNI plugins ${marker:-missing}, $cni_version is pinned"
}

# Field of the row whose column $2 equals $3, in a table with a header line (columns by name, so
# extra columns in newer releases do not matter). Usage: column_of <table> <match-column> <value> <column>
column_of() {
    awk -v match_col="$2" -v value="$3" -v want="$4" '
        NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
        $idx[match_col] == value { print $idx[want]; exit }' <<<"$1"
}

# Every configured server must be in the Raft member list. Usage: check_raft <name> <port> <leader> <members>
check_raft() {
    local name="$1" port="$2" leader="$3" members="$4" ip missing=()
    [ -n "$leader" ] || problem "$name Raft has no leader"
    for ip in $server_ips; do
        case " $members " in
            *" $ip:$port "*) ;;
            *) missing+=("$ip") ;;
        esac
    done
    [ "${#missing[@]}" -eq 0 ] || problem "$name Raft lacks voter(s) ${missing[*]} (voters: ${members:-none})"
}

# "<leader address>|<voter addresses>" from a `consul operator raft list-peers` table.
consul_raft() {
    awk '
        NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
        $idx["State"] == "leader" { leader = $idx["Address"] }
        $idx["Voter"] == "true" { voters = voters (voters ? " " : "") $idx["Address"] }
        END { print leader "|" voters }' <<<"$1"
}

# Reads JSON on stdin; prints the value at a path of keys/indexes, lists space-separated.
json_at() {
    python3 -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]:
    value = value[int(key)] if isinstance(value, list) else value.get(key)
print(" ".join(map(str, value)) if isinstance(value, list) else ("" if value is None else str(value).lower() if isinstance(value, bool) else value))
' "$@"
}

check_consul() {
    local members status peers
    if ! members="$(consul members 2>&1)"; then
        problem "Consul agent does not answer: ${members##*$'\n'}"
        return
    fi
    status="$(column_of "$members" Node "$node" Status)"
    [ "$status" = alive ] || problem "Consul member $node is ${status:-not a member}"
    if peers="$(consul operator raft list-peers 2>&1)"; then
        peers="$(consul_raft "$peers")"
        check_raft Consul 8300 "${peers%%|*}" "${peers#*|}"
    else
        problem "Consul Raft: ${peers##*$'\n'}"
    fi
}

check_nomad() {
    local kind health ok leader peers
    for kind in server client; do
        # `nomad operator api` prints the body of any answer (an unhealthy agent answers 500).
        health="$(nomad operator api "/v1/agent/health?type=$kind" 2>&1 || true)"
        ok="$(json_at "$kind" ok <<<"$health" 2>/dev/null || true)"
        if [ "$ok" = true ]; then
            continue
        elif [ "$ok" = false ]; then
            problem "Nomad $kind on $node is unhealthy: $(json_at "$kind" message <<<"$health")"
        else
            problem "Nomad $kind agent does not answer: ${health##*$'\n'}"
        fi
    done
    leader="$(nomad operator api /v1/status/leader 2>/dev/null | tr -d '"' || true)"
    peers="$(nomad operator api /v1/status/peers 2>/dev/null | json_at 2>/dev/null || true)"
    check_raft Nomad 4647 "$leader" "$peers"
}

end=$((SECONDS + timeout))
while true; do
    problems=()
    check_units
    check_versions
    check_consul
    check_nomad
    if [ "${#problems[@]}" -eq 0 ]; then
        count=$(wc -w <<<"$server_ips")
        echo "ok: $node is healthy: Consul member alive, Consul and Nomad Raft have a leader and all $count voters, Nomad server alive, client ready"
        exit 0
    fi
    if ((SECONDS >= end)); then
        echo "health gate failed on $node after ${timeout}s; the rollout stops here:" >&2
        printf '  - %s\n' "${problems[@]}" >&2
        exit 1
    fi
    sleep "$interval"
done
