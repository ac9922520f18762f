"""Pieces every host shares: first-boot user data (apt repositories, Docker, fail-fast runcmd) and the
host files pushed after it (sysctls, metadata blocking, the apply script).

User data keeps only what first boot needs: the metadata service serves it to anything on the host,
servers ignore later edits to it, and it is capped at 32 KiB. Everything else is pushed over SSH
(cloud_init/files.py, components/remote.py), so an edit reaches running nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from cloud_init import apt_keys
from cloud_init.files import DAEMON_RELOAD, SYSCTL, NodeFile, restart
from cloud_init.script_files import installed_path, script_text
from cloud_init.units import render_unit

HASHICORP_REPO = "https://apt.releases.hashicorp.com"
DOCKER_REPO = "https://download.docker.com/linux/debian"
STATE_DIR = "/var/lib/iot"  # first-boot result and pending apply actions
FIRST_BOOT_FAILED = f"{STATE_DIR}/first-boot.failed"

SYSCTL_PATH = "/etc/sysctl.d/60-iot.conf"
MODULES_PATH = "/etc/modules-load.d/iot.conf"
METADATA_BLOCK_UNIT = "iot-block-metadata.service"
# Monitors ping unprivileged (ICMP datagram sockets): open the range to every group.
SYSCTLS: dict[str, str] = {
    "net.ipv4.ping_group_range": "0 2147483647",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
}
MAX_USER_DATA_BYTES = 32 * 1024
# cloud-init's apt module turns the embedded armored keys into keyrings with `gpg --dearmor`;
# minimal images may lack gpg. bootcmd runs before the apt module (and before write_files), hence inline.
ENSURE_GNUPG = (
    "command -v gpg >/dev/null 2>&1 || "
    "{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnupg; }"
)
# First statement of runcmd (cloud-init runs all runcmd entries as one `sh` script): stop at the
# first failing step, name it in the cloud-init log and in FIRST_BOOT_FAILED, and exit non-zero so
# `cloud-init status` reports an error instead of a node that fails much later.
FIRST_BOOT_PROLOGUE = f"""set -eu
state_dir="${{IOT_STATE_DIR:-{STATE_DIR}}}"
mkdir -p "$state_dir"
rm -f "$state_dir/first-boot.failed"
step() {{
    name="$1"
    shift
    echo "iot first boot: $name"
    if "$@"; then
        return 0
    else
        status=$?
    fi
    echo "iot first boot: step '$name' failed with exit status $status" >&2
    printf '%s (exit status %s)\\n' "$name" "$status" >"$state_dir/first-boot.failed"
    exit 1
}}
"""


def _source(repo: str, suite: str, key: apt_keys.AptKey) -> dict[str, str]:
    # The key is embedded (no keyserver at boot) and lands in its own keyring ($KEY_FILE),
    # referenced with signed-by, so it only vouches for its own repository.
    return {"source": f"deb [signed-by=$KEY_FILE] {repo} $RELEASE {suite}", "key": apt_keys.armored_key(key)}


def hashicorp_source() -> dict[str, str]:
    return _source(HASHICORP_REPO, "main", apt_keys.HASHICORP)


def docker_source() -> dict[str, str]:
    return _source(DOCKER_REPO, "stable", apt_keys.DOCKER)


def docker_packages() -> list[str]:
    return ["docker-ce", "docker-ce-cli", "containerd.io"]


def step(name: str, *argv: str) -> list[str]:
    """One first-boot runcmd step: runs `argv`; a failure names `name` and fails the boot."""
    return ["step", name, *argv]


def first_boot_runcmd(steps: Sequence[Sequence[str]]) -> list[str | list[str]]:
    return [FIRST_BOOT_PROLOGUE, *(list(s) for s in steps)]


def first_boot_file(name: str) -> dict[str, str]:
    """A script first boot runs, as a cloud-init write_files entry."""
    return {"path": installed_path(name), "permissions": "0755", "content": script_text(name)}


# --- pushed host files ------------------------------------------------------------------------

def script_node_file(name: str, on_change: Sequence[str] = ()) -> NodeFile:
    return NodeFile(installed_path(name), script_text(name), mode="0755", on_change=tuple(on_change))


def sysctl_file() -> NodeFile:
    body = "".join(f"{key} = {value}\n" for key, value in SYSCTLS.items())
    return NodeFile(SYSCTL_PATH, body, on_change=(SYSCTL,))


def modules_file() -> NodeFile:
    # bridge-nf-call-* sysctls exist only once br_netfilter is loaded.
    return NodeFile(MODULES_PATH, "br_netfilter\n", on_change=(SYSCTL,))


def metadata_block_unit() -> NodeFile:
    unit = render_unit({
        "Unit": [
            ("Description", "Block containers from the cloud metadata service"),
            ("After", "docker.service network-online.target"),
            ("Wants", "network-online.target"),
            ("PartOf", "docker.service"),
        ],
        "Service": [
            ("Type", "oneshot"),
            ("RemainAfterExit", "yes"),
            ("ExecStart", installed_path("block-metadata.sh")),
        ],
        "Install": [("WantedBy", "multi-user.target docker.service")],
    })
    return NodeFile(f"/etc/systemd/system/{METADATA_BLOCK_UNIT}", unit,
                    on_change=(DAEMON_RELOAD, restart(METADATA_BLOCK_UNIT)))


def host_node_files() -> list[NodeFile]:
    """What every host gets pushed: sysctls, metadata blocking, and the script that applies pushes."""
    return [
        sysctl_file(),
        modules_file(),
        script_node_file("block-metadata.sh", [restart(METADATA_BLOCK_UNIT)]),
        metadata_block_unit(),
        script_node_file("apply.sh"),
    ]


# --- user data ----------------------------------------------------------------------------------

def cloud_config(
    *,
    hostname: str,
    sources: Mapping[str, Mapping[str, str]],
    packages: Sequence[str | Sequence[str]],
    write_files: Sequence[Mapping[str, str]],
    runcmd: Sequence[str | Sequence[str]],
) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "preserve_hostname": False,
        "ssh_pwauth": False,
        "bootcmd": [["sh", "-c", ENSURE_GNUPG]],
        "disable_root": False,
        "package_update": True,
        "package_upgrade": False,
        "apt": {"sources": {name: dict(src) for name, src in sources.items()}},
        "packages": [p if isinstance(p, str) else list(p) for p in packages],
        "write_files": [dict(f) for f in write_files],
        "runcmd": [cmd if isinstance(cmd, str) else list(cmd) for cmd in runcmd],
    }


class _BlockStyleDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (scripts, keys) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStyleDumper.add_representer(str, _represent_str)


def dump_cloud_config(document: Mapping[str, Any]) -> str:
    """`#cloud-config` text; refuses to produce user data the provider would reject."""
    body = yaml.dump(dict(document), Dumper=_BlockStyleDumper, sort_keys=False, default_flow_style=False, width=1000)
    text = "#cloud-config\n" + body
    size = len(text.encode())
    if size > MAX_USER_DATA_BYTES:
        raise ValueError(f"user data is {size} bytes, over the {MAX_USER_DATA_BYTES}-byte provider limit")
    return text
