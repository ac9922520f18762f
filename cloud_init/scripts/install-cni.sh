#!/bin/sh
# Install the pinned CNI reference plugins Nomad's bridge networking needs (idempotent).
# Usage: iot-install-cni <version>   e.g. iot-install-cni 1.6.2
set -eu

version="${1:?usage: iot-install-cni <version>}"
dest=/opt/cni/bin
marker="$dest/.iot-version"

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$version" ]; then
    exit 0
fi

arch="$(dpkg --print-architecture)"
tarball="cni-plugins-linux-${arch}-v${version}.tgz"
base="https://github.com/containernetworking/plugins/releases/download/v${version}"
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

curl -fsSL --retry 5 -o "$workdir/$tarball" "$base/$tarball"
curl -fsSL --retry 5 -o "$workdir/$tarball.sha256" "$base/$tarball.sha256"
(cd "$workdir" && sha256sum -c "$tarball.sha256")

mkdir -p "$dest"
tar -xzf "$workdir/$tarball" -C "$dest"
printf '%s\n' "$version" > "$marker"
