"""User data and agent configs for an app cluster node (Consul server + Nomad server and client).

Agent configs are dicts dumped as JSON. Only public settings live here; gossip keys, ACL tokens and
TLS keys are pushed over SSH into `secrets.json` / `tls/` next to them (components/cluster.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloud_init import common
from cloud_init.script_files import installed_path
from cloud_init.units import render_unit

CONSUL_DATACENTER = "eu-central"
NOMAD_REGION = "global"
CONSUL_DIR = "/etc/iot/consul.d"
NOMAD_DIR = "/etc/iot/nomad.d"
POLICY_DIR = "/etc/iot/consul-policies"
CNI_BIN_DIR = "/opt/cni/bin"
CONSUL_HTTPS_PORT = 8501

# TLS material and secret config the SSH push writes (components/cluster.py fills them in).
CONSUL_SECRET_FILES = {
    "ca": f"{CONSUL_DIR}/tls/ca.pem",
    "cert": f"{CONSUL_DIR}/tls/node.pem",
    "key": f"{CONSUL_DIR}/tls/node-key.pem",
    "config": f"{CONSUL_DIR}/secrets.json",
}
NOMAD_SECRET_FILES = {
    "ca": f"{NOMAD_DIR}/tls/ca.pem",
    "cert": f"{NOMAD_DIR}/tls/node.pem",
    "key": f"{NOMAD_DIR}/tls/node-key.pem",
    "config": f"{NOMAD_DIR}/secrets.json",
}

# Consul ACL rules (JSON form) for the tokens the bootstrap script creates.
CONSUL_POLICIES: dict[str, dict[str, Any]] = {
    "agent": {"node_prefix": {"": {"policy": "write"}}, "service_prefix": {"": {"policy": "read"}}},
    "nomad": {
        "agent_prefix": {"": {"policy": "read"}},
        "node_prefix": {"": {"policy": "read"}},
        "service_prefix": {"": {"policy": "write"}},
        "key_prefix": {"": {"policy": "read"}},
    },
    "catalog-read": {"node_prefix": {"": {"policy": "read"}}, "service_prefix": {"": {"policy": "read"}}},
}


@dataclass(frozen=True)
class ClusterNodeSpec:
    hostname: str
    datacenter: str  # Nomad datacenter: the Hetzner location, so jobs can spread across them
    private_ip: str
    private_cidr: str  # the subnet the agents bind to, e.g. 10.0.1.0/24
    server_ips: tuple[str, ...]  # every server's fixed private IP (retry_join)
    consul_version: str
    nomad_version: str
    cni_version: str


def private_address_template(cidr: str) -> str:
    """go-sockaddr template resolving to this host's address in `cidr` (the NIC may come up late)."""
    return f'{{{{ GetPrivateInterfaces | include "network" "{cidr}" | attr "address" }}}}'


def private_interface_template(cidr: str) -> str:
    return f'{{{{ GetPrivateInterfaces | include "network" "{cidr}" | attr "name" }}}}'


def consul_config(spec: ClusterNodeSpec) -> dict[str, Any]:
    address = private_address_template(spec.private_cidr)
    return {
        "datacenter": CONSUL_DATACENTER,
        "node_name": spec.hostname,
        "data_dir": "/opt/consul",
        "server": True,
        "bootstrap_expect": len(spec.server_ips),
        "bind_addr": address,
        "advertise_addr": address,
        "client_addr": "127.0.0.1",
        "retry_join": list(spec.server_ips),
        "ui_config": {"enabled": False},
        "ports": {"http": -1, "https": CONSUL_HTTPS_PORT, "grpc": -1, "grpc_tls": 8503},
        "tls": {
            "defaults": {
                "ca_file": CONSUL_SECRET_FILES["ca"],
                "cert_file": CONSUL_SECRET_FILES["cert"],
                "key_file": CONSUL_SECRET_FILES["key"],
                "verify_incoming": True,
                "verify_outgoing": True,
            },
            "internal_rpc": {"verify_server_hostname": True},
            # The HTTPS API listens on loopback only and is guarded by ACLs.
            "https": {"verify_incoming": False},
        },
        "auto_encrypt": {"allow_tls": True},
        "acl": {
            "enabled": True,
            "default_policy": "deny",
            "down_policy": "extend-cache",
            "enable_token_persistence": True,
        },
        "enable_script_checks": False,
        "disable_remote_exec": True,
    }


def nomad_config(spec: ClusterNodeSpec) -> dict[str, Any]:
    address = private_address_template(spec.private_cidr)
    return {
        "region": NOMAD_REGION,
        "datacenter": spec.datacenter,
        "name": spec.hostname,
        "data_dir": "/opt/nomad/data",
        # HTTP API on every interface: the Hetzner firewall admits only iot:adminCidrs to 4646.
        "bind_addr": "0.0.0.0",
        "addresses": {"http": "0.0.0.0", "rpc": address, "serf": address},
        "advertise": {"http": address, "rpc": address, "serf": address},
        "server": {
            "enabled": True,
            "bootstrap_expect": len(spec.server_ips),
            "server_join": {"retry_join": list(spec.server_ips)},
        },
        "client": {
            "enabled": True,
            "servers": [f"{ip}:4647" for ip in spec.server_ips],
            "network_interface": private_interface_template(spec.private_cidr),
            "cni_path": CNI_BIN_DIR,
        },
        "acl": {"enabled": True},
        "tls": {
            "http": True,
            "rpc": True,
            "ca_file": NOMAD_SECRET_FILES["ca"],
            "cert_file": NOMAD_SECRET_FILES["cert"],
            "key_file": NOMAD_SECRET_FILES["key"],
            "verify_server_hostname": True,
            "verify_https_client": True,
        },
        "consul": {
            "address": f"127.0.0.1:{CONSUL_HTTPS_PORT}",
            "ssl": True,
            "ca_file": CONSUL_SECRET_FILES["ca"],
            "grpc_address": "127.0.0.1:8503",
            "grpc_ca_file": CONSUL_SECRET_FILES["ca"],
        },
        # The docker plugin keeps its defaults: no privileged containers, no host volume mounts.
        "telemetry": {"prometheus_metrics": True, "publish_allocation_metrics": True, "publish_node_metrics": True},
    }


CONFIG_DIR_FLAG = {"consul": "-config-dir", "nomad": "-config"}


def agent_dropin(agent: str, config_dir: str, extra_unit: Sequence[tuple[str, str]] = ()) -> str:
    """Point the packaged unit at our config dir; start only once the SSH push delivered secrets."""
    return render_unit({
        "Unit": [
            ("ConditionFileNotEmpty", ""),
            ("ConditionPathExists", f"{config_dir}/secrets.json"),
            ("Wants", "network-online.target"),
            ("After", "network-online.target"),
            *extra_unit,
        ],
        "Service": [
            ("ExecStart", ""),
            # Consul takes -config-dir; Nomad has no such flag: its -config accepts a directory.
            ("ExecStart", f"/usr/bin/{agent} agent {CONFIG_DIR_FLAG[agent]}={config_dir}"),
            ("Restart", "on-failure"),
            ("RestartSec", "5"),
        ],
    })


def _json_file(path: str, data: Any, owner: str = "root:root", defer: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "permissions": "0644", "owner": owner,
                             "content": json.dumps(data, indent=2, sort_keys=True) + "\n"}
    if defer:
        entry["defer"] = True  # written after packages, once the consul user exists
    return entry


def render_cluster_user_data(spec: ClusterNodeSpec) -> str:
    """`#cloud-config` for one cluster node. Contains no secret of any kind."""
    write_files = [
        common.sysctl_file(),
        common.modules_file(),
        common.script_file("block-metadata.sh"),
        common.script_file("install-cni.sh"),
        common.script_file("install_files.py"),
        common.script_file("cluster-bootstrap.sh"),
        common.metadata_block_unit(),
        {"path": "/etc/systemd/system/consul.service.d/10-iot.conf", "permissions": "0644",
         "content": agent_dropin("consul", CONSUL_DIR)},
        {"path": "/etc/systemd/system/nomad.service.d/10-iot.conf", "permissions": "0644",
         "content": agent_dropin("nomad", NOMAD_DIR, [("Wants", "consul.service"), ("After", "consul.service")])},
        _json_file(f"{CONSUL_DIR}/consul.json", consul_config(spec), owner="consul:consul", defer=True),
        _json_file(f"{NOMAD_DIR}/nomad.json", nomad_config(spec)),
        *(_json_file(f"{POLICY_DIR}/{name}.json", rules) for name, rules in CONSUL_POLICIES.items()),
    ]
    packages: list[str | list[str]] = [
        ["consul", f"{spec.consul_version}-1"],
        ["nomad", f"{spec.nomad_version}-1"],
        *common.docker_packages(),
        "curl",
        "iptables",
        "ca-certificates",
    ]
    runcmd = [
        [installed_path("install-cni.sh"), spec.cni_version],
        *common.base_runcmd(),
    ]
    document = common.cloud_config(
        hostname=spec.hostname,
        sources={"hashicorp": common.hashicorp_source(), "docker": common.docker_source()},
        packages=packages,
        write_files=write_files,
        runcmd=runcmd,
    )
    return common.dump_cloud_config(document)
