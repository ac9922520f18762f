"""Pieces every host's user data shares: apt repositories, Docker, sysctls, metadata blocking.

Everything here is public: user data is served by the metadata service to anything on the host,
so secrets travel over SSH instead (components/remote.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from cloud_init.script_files import installed_path, script_text
from cloud_init.units import render_unit

# Signing keys are fetched by fingerprint from the keyserver and written to their own keyring
# ($KEY_FILE), referenced with signed-by, so they only vouch for their own repository.
HASHICORP_KEY_FINGERPRINT = "798AEC654E5C15428C8E42EEAA16FCBCA621E701"
DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
KEYSERVER = "keyserver.ubuntu.com"

SYSCTL_PATH = "/etc/sysctl.d/60-iot.conf"
# Monitors ping unprivileged (ICMP datagram sockets): open the range to every group.
SYSCTLS: dict[str, str] = {
    "net.ipv4.ping_group_range": "0 2147483647",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
}
MAX_USER_DATA_BYTES = 32 * 1024
# cloud-init's apt module fetches keys with `gpg --recv-keys`, which needs dirmngr; minimal images
# may lack it. bootcmd runs before the apt module (and before write_files), hence inline.
ENSURE_GNUPG = (
    "command -v dirmngr >/dev/null 2>&1 || "
    "{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnupg dirmngr; }"
)


def hashicorp_source() -> dict[str, str]:
    return {
        "source": "deb [signed-by=$KEY_FILE] https://apt.releases.hashicorp.com $RELEASE main",
        "keyid": HASHICORP_KEY_FINGERPRINT,
        "keyserver": KEYSERVER,
    }


def docker_source() -> dict[str, str]:
    return {
        "source": "deb [signed-by=$KEY_FILE] https://download.docker.com/linux/debian $RELEASE stable",
        "keyid": DOCKER_KEY_FINGERPRINT,
        "keyserver": KEYSERVER,
    }


def docker_packages() -> list[str]:
    return ["docker-ce", "docker-ce-cli", "containerd.io"]


def sysctl_file() -> dict[str, str]:
    body = "".join(f"{key} = {value}\n" for key, value in SYSCTLS.items())
    return {"path": SYSCTL_PATH, "permissions": "0644", "content": body}


def modules_file() -> dict[str, str]:
    # bridge-nf-call-* sysctls exist only once br_netfilter is loaded.
    return {"path": "/etc/modules-load.d/iot.conf", "permissions": "0644", "content": "br_netfilter\n"}


def script_file(name: str) -> dict[str, str]:
    return {"path": installed_path(name), "permissions": "0755", "content": script_text(name)}


def metadata_block_unit() -> dict[str, str]:
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
    return {"path": "/etc/systemd/system/iot-block-metadata.service", "permissions": "0644", "content": unit}


def base_runcmd() -> list[list[str]]:
    """Commands (argument lists, no shell) every host runs once packages are installed."""
    return [
        ["modprobe", "br_netfilter"],
        ["sysctl", "--system"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "docker.service"],
        ["systemctl", "enable", "--now", "iot-block-metadata.service"],
    ]


def cloud_config(
    *,
    hostname: str,
    sources: Mapping[str, Mapping[str, str]],
    packages: Sequence[str | Sequence[str]],
    write_files: Sequence[Mapping[str, str]],
    runcmd: Sequence[Sequence[str]],
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
        "runcmd": [list(cmd) for cmd in runcmd],
    }


class _BlockStyleDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (scripts, units) as readable `|` blocks."""


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
