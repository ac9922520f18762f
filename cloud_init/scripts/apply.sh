#!/bin/bash
# Carry out what the last pushes left pending (iot-install-files records one marker per action in
# $IOT_STATE_DIR/pending), then make sure every unit given is enabled and active.
#   daemon-reload   a unit or drop-in changed
#   sysctl          kernel modules or sysctls changed
#   packages        pinned Consul/Nomad/CNI versions changed: install them, restart the agents
#   restart:<unit>  a setting the agent reads only at start changed (agent config, gossip key)
#   reload:<unit>   a setting the agent reloads on SIGHUP changed (TLS certificates, Consul ACL tokens)
# A marker is removed only once its action succeeded, so a failed run leaves it for the next one.
# Usage: iot-apply [--start-only] <unit>...
#   --start-only  first start (never chained): start units that are not running and leave running
#                 ones alone; their restarts and reloads wait for the rolling, health-gated step.
set -euo pipefail

state_dir="${IOT_STATE_DIR:-/var/lib/iot}"
pending="$state_dir/pending"
versions_file="${IOT_VERSIONS_FILE:-/etc/iot/versions.env}"
start_timeout="${IOT_START_TIMEOUT:-90}"
agents=(consul.service nomad.service)
host="$(hostname)"

start_only=false
if [ "${1:-}" = "--start-only" ]; then
    start_only=true
    shift
fi
if [ "$#" -eq 0 ]; then
    echo "usage: iot-apply [--start-only] <unit>..." >&2
    exit 2
fi
mkdir -p "$pending"

pending_action() { [ -e "$pending/$1" ]; }
mark() { touch "$pending/$1"; }
clear_action() { rm -f "$pending/$1"; }
fail() {
    echo "iot-apply on $host: $*" >&2
    exit 1
}

unit_log() {
    journalctl -u "$1" -n 15 --no-pager 2>/dev/null || true
}

wait_active() {
    local unit="$1" deadline=$((SECONDS + start_timeout))
    until systemctl is-active --quiet "$unit"; do
        if ((SECONDS >= deadline)); then
            fail "$unit is $(systemctl is-active "$unit" || true) ${start_timeout}s after it was started; last log lines:
$(unit_log "$unit")"
        fi
        sleep 2
    done
}

# KEY=value lines, read as data (never sourced).
read_versions() {
    consul_version="" nomad_version="" cni_version=""
    local key value
    while IFS='=' read -r key value; do
        case "$key" in
            CONSUL_VERSION) consul_version="$value" ;;
            NOMAD_VERSION) nomad_version="$value" ;;
            CNI_VERSION) cni_version="$value" ;;
        esac
    done <"$versions_file"
    if [ -z "$consul_version" ] || [ -z "$nomad_version" ] || [ -z "$cni_version" ]; then
        fail "$versions_file lacks CONSUL_VERSION, NOMAD_VERSION or CNI_VERSION"
    fi
}

install_pinned_packages() {
    read_versions
    local wanted=() package version installed
    for package in consul nomad; do
        version="${package}_version"
        installed="$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || true)"
        if [ "$installed" != "${!version}-1" ]; then
            wanted+=("$package=${!version}-1")
        fi
    done
    if [ "${#wanted[@]}" -gt 0 ]; then
        echo "installing ${wanted[*]}"
        apt-get update -q >/dev/null || fail "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades \
            -o Dpkg::Options::=--force-confold "${wanted[@]}" >/dev/null || fail "could not install ${wanted[*]}"
        local agent
        for agent in "${agents[@]}"; do
            mark "restart:$agent"
        done
    fi
    "${IOT_INSTALL_CNI:-/usr/local/sbin/iot-install-cni}" "$cni_version" || fail "could not install CNI plugins $cni_version"
    echo "ok: Consul $consul_version, Nomad $nomad_version and CNI plugins $cni_version installed"
}

if pending_action daemon-reload; then
    systemctl daemon-reload
    clear_action daemon-reload
    echo "ok: systemd units reloaded"
fi
if pending_action sysctl; then
    modprobe br_netfilter
    sysctl --system >/dev/null
    clear_action sysctl
    echo "ok: kernel modules and sysctls applied"
fi
if pending_action packages; then
    if $start_only; then
        echo "pending: package versions are checked by the rolling apply step"
    else
        install_pinned_packages
        clear_action packages
    fi
fi

for unit in "$@"; do
    systemctl is-enabled --quiet "$unit" || systemctl enable --quiet "$unit" || fail "could not enable $unit"
    if ! systemctl is-active --quiet "$unit"; then
        # A start reads the whole current configuration: nothing stays pending for this unit.
        systemctl start "$unit" || fail "$unit failed to start; last log lines:
$(unit_log "$unit")"
        wait_active "$unit"
        clear_action "restart:$unit"
        clear_action "reload:$unit"
        echo "ok: $unit started"
    elif $start_only; then
        if pending_action "restart:$unit" || pending_action "reload:$unit"; then
            echo "pending: $unit is running; its changes wait for the rolling apply step"
        else
            echo "ok: $unit running"
        fi
    elif pending_action "restart:$unit"; then
        systemctl restart "$unit" || fail "$unit failed to restart; last log lines:
$(unit_log "$unit")"
        wait_active "$unit"
        clear_action "restart:$unit"
        clear_action "reload:$unit"
        echo "ok: $unit restarted"
    elif pending_action "reload:$unit"; then
        systemctl reload "$unit" || fail "$unit failed to reload; last log lines:
$(unit_log "$unit")"
        wait_active "$unit"
        clear_action "reload:$unit"
        echo "ok: $unit reloaded"
    else
        echo "ok: $unit unchanged"
    fi
done
