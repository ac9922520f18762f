#!/bin/sh
# Last first-boot step: check what the node needs before anything is pushed to it, and fail the
# boot (so `cloud-init status --wait` fails) naming each thing that is missing.
# Usage: iot-first-boot-check [unit.service | package=version | cni=version]...
#   docker.service      the unit is active
#   consul=1.22.7-1     exactly this package version is installed
#   cni=1.6.2           the CNI plugins of this release are in /opt/cni/bin
set -u

cni_dir="${IOT_CNI_DIR:-/opt/cni/bin}"
missing=0
problem() {
    echo "first boot check: $*" >&2
    missing=$((missing + 1))
}

for want in "$@"; do
    case "$want" in
        *.service)
            systemctl is-active --quiet "$want" || problem "$want is $(systemctl is-active "$want")"
            ;;
        cni=*)
            version="${want#cni=}"
            if [ ! -x "$cni_dir/bridge" ] || [ "$(cat "$cni_dir/.iot-version" 2>/dev/null)" != "$version" ]; then
                problem "CNI plugins $version are not installed in $cni_dir"
            fi
            ;;
        *=*)
            package="${want%%=*}"
            version="${want#*=}"
            installed="$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null)"
            [ "$installed" = "$version" ] || problem "$package ${installed:-is not installed}, $version is pinned"
            ;;
        *)
            problem "unknown check $want"
            ;;
    esac
done
if [ "$missing" -gt 0 ]; then
    exit 1
fi
echo "first boot check: ok ($*)"
