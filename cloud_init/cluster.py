"""Files of an app cluster node (Consul server + Nomad server and client): first-boot user data, and
the agent configs, drop-ins, policies and scripts pushed over SSH on every `pulumi up`.

Agent configs are dicts dumped as JSON. Only public settings live here; gossip keys, ACL tokens and
TLS keys fill the SECRET_FILES slots (components/cluster_files.py), pushed next to them. Each file
says what a change to it needs (cloud_init/files.py): certificates and Consul's ACL tokens are
reloaded, settings read only at start restart the agent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloud_init import common
from cloud_init.files import DAEMON_RELOAD, PACKAGES, NodeFile, reload, restart
from cloud_init.script_files import installed_path, nomad_policy_text
from cloud_init.units import render_unit

CONSUL_DATACENTER = "eu-central"
NOMAD_REGION = "global"
CONSUL_UNIT = "consul.service"
NOMAD_UNIT = "nomad.service"
AGENT_UNITS = (common.METADATA_BLOCK_UNIT, CONSUL_UNIT, NOMAD_UNIT)  # the order iot-apply handles them
CONSUL_DIR = "/etc/iot/consul.d"
NOMAD_DIR = "/etc/iot/nomad.d"
POLICY_DIR = "/etc/iot/consul-policies"
NOMAD_POLICY_DIR = "/etc/iot/nomad-policies"
TOKENS_DIR = "/etc/iot/tokens"  # management tokens for on-node tools (gate, leave), root only
DOCKER_CONFIG_DIR = "/etc/iot/docker"  # config.json: registry credentials for Nomad's docker driver
CLUSTER_ENV = "/etc/iot/cluster.env"
VERSIONS_ENV = "/etc/iot/versions.env"
CNI_BIN_DIR = "/opt/cni/bin"
CONSUL_HTTPS_PORT = 8501


@dataclass(frozen=True)
class SecretSlot:
    """A pushed file whose content is a secret the component fills in."""

    path: str
    mode: str = "0600"
    owner: str = "root"
    on_change: tuple[str, ...] = ()


# TLS material, gossip keys and ACL tokens: reload where the agent re-reads them on SIGHUP (Consul:
# TLS and acl.tokens; Nomad: TLS), restart where it reads them only at start (gossip keys, Nomad's
# Consul token). A new CA is a reload too.
SECRET_FILES: dict[str, SecretSlot] = {
    "consul_ca": SecretSlot(f"{CONSUL_DIR}/tls/ca.pem", "0644", "consul", (reload(CONSUL_UNIT),)),
    "consul_cert": SecretSlot(f"{CONSUL_DIR}/tls/node.pem", "0644", "consul", (reload(CONSUL_UNIT),)),
    "consul_key": SecretSlot(f"{CONSUL_DIR}/tls/node-key.pem", "0600", "consul", (reload(CONSUL_UNIT),)),
    "consul_gossip": SecretSlot(f"{CONSUL_DIR}/secrets.json", "0600", "consul", (restart(CONSUL_UNIT),)),
    "consul_tokens": SecretSlot(f"{CONSUL_DIR}/acl-tokens.json", "0600", "consul", (reload(CONSUL_UNIT),)),
    "nomad_ca": SecretSlot(f"{NOMAD_DIR}/tls/ca.pem", "0644", on_change=(reload(NOMAD_UNIT),)),
    "nomad_cert": SecretSlot(f"{NOMAD_DIR}/tls/node.pem", "0644", on_change=(reload(NOMAD_UNIT),)),
    "nomad_key": SecretSlot(f"{NOMAD_DIR}/tls/node-key.pem", "0600", on_change=(reload(NOMAD_UNIT),)),
    "nomad_secrets": SecretSlot(f"{NOMAD_DIR}/secrets.json", "0600", on_change=(restart(NOMAD_UNIT),)),
    "consul_management": SecretSlot(f"{TOKENS_DIR}/consul-management"),
    "nomad_management": SecretSlot(f"{TOKENS_DIR}/nomad-management"),
    # Nomad's docker driver reads it on every image pull: no restart needed.
    "docker_config": SecretSlot(f"{DOCKER_CONFIG_DIR}/config.json"),
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
# Nomad ACL policies (cloud_init/policies/<name>.hcl) for the deployer (Pulumi) and operator tokens.
NOMAD_POLICIES = ("deployer", "operator")


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
                "ca_file": SECRET_FILES["consul_ca"].path,
                "cert_file": SECRET_FILES["consul_cert"].path,
                "key_file": SECRET_FILES["consul_key"].path,
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
        # A server that died without leaving is pruned from Raft (the default, stated on purpose:
        # node removal relies on it when the node cannot run its leave step).
        "autopilot": {"cleanup_dead_servers": True},
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
        "autopilot": {"cleanup_dead_servers": True},
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
            "ca_file": SECRET_FILES["nomad_ca"].path,
            "cert_file": SECRET_FILES["nomad_cert"].path,
            "key_file": SECRET_FILES["nomad_key"].path,
            "verify_server_hostname": True,
            "verify_https_client": True,
        },
        "consul": {
            "address": f"127.0.0.1:{CONSUL_HTTPS_PORT}",
            "ssl": True,
            "ca_file": SECRET_FILES["consul_ca"].path,
            "grpc_address": "127.0.0.1:8503",
            "grpc_ca_file": SECRET_FILES["consul_ca"].path,
        },
        # The docker plugin keeps its defaults (no privileged containers, no host volume mounts) and
        # pulls with the registry credentials pushed to this node (iot:registry), never with
        # credentials in a job spec. Images of registries not in the file are pulled anonymously.
        "plugin": {"docker": {"config": {"auth": {"config": SECRET_FILES["docker_config"].path}}}},
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


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _env(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def cluster_env(spec: ClusterNodeSpec) -> str:
    """Who this node is and who its peers are: read by the health gate and the leave step."""
    return _env({"NODE_NAME": spec.hostname, "NODE_IP": spec.private_ip, "SERVER_IPS": " ".join(spec.server_ips)})


def versions_env(spec: ClusterNodeSpec) -> str:
    return _env({"CONSUL_VERSION": spec.consul_version, "NOMAD_VERSION": spec.nomad_version,
                 "CNI_VERSION": spec.cni_version})


def cluster_node_files(spec: ClusterNodeSpec) -> list[NodeFile]:
    """Every public file a cluster node gets pushed, with what a change to it needs."""
    return [
        *common.host_node_files(),
        NodeFile(f"{CONSUL_DIR}/consul.json", _json(consul_config(spec)), owner="consul",
                 on_change=(restart(CONSUL_UNIT),)),
        NodeFile(f"{NOMAD_DIR}/nomad.json", _json(nomad_config(spec)), on_change=(restart(NOMAD_UNIT),)),
        NodeFile(f"/etc/systemd/system/{CONSUL_UNIT}.d/10-iot.conf", agent_dropin("consul", CONSUL_DIR),
                 on_change=(DAEMON_RELOAD, restart(CONSUL_UNIT))),
        NodeFile(f"/etc/systemd/system/{NOMAD_UNIT}.d/10-iot.conf",
                 agent_dropin("nomad", NOMAD_DIR, [("Wants", CONSUL_UNIT), ("After", CONSUL_UNIT)]),
                 on_change=(DAEMON_RELOAD, restart(NOMAD_UNIT))),
        NodeFile(VERSIONS_ENV, versions_env(spec), on_change=(PACKAGES,)),
        NodeFile(CLUSTER_ENV, cluster_env(spec)),
        *(NodeFile(f"{POLICY_DIR}/{name}.json", _json(rules)) for name, rules in CONSUL_POLICIES.items()),
        *(NodeFile(f"{NOMAD_POLICY_DIR}/{name}.hcl", nomad_policy_text(name)) for name in NOMAD_POLICIES),
        common.script_node_file("install-cni.sh"),
        common.script_node_file("health-gate.sh"),
        common.script_node_file("cluster-bootstrap.sh"),
        common.script_node_file("node-leave.sh"),
    ]


def render_cluster_user_data(spec: ClusterNodeSpec) -> str:
    """`#cloud-config` for one cluster node: first boot only, no secret of any kind."""
    consul, nomad = f"{spec.consul_version}-1", f"{spec.nomad_version}-1"
    packages: list[str | list[str]] = [
        ["consul", consul],
        ["nomad", nomad],
        *common.docker_packages(),
        "curl",
        "iptables",
        "ca-certificates",
    ]
    runcmd = common.first_boot_runcmd([
        common.step("enable Docker", "systemctl", "enable", "--now", "docker.service"),
        common.step(f"install CNI plugins {spec.cni_version}", installed_path("install-cni.sh"), spec.cni_version),
        common.step("check Docker, CNI plugins and pinned agent versions", installed_path("first-boot-check.sh"),
                    "docker.service", f"cni={spec.cni_version}", f"consul={consul}", f"nomad={nomad}"),
    ])
    document = common.cloud_config(
        hostname=spec.hostname,
        sources={"hashicorp": common.hashicorp_source(), "docker": common.docker_source()},
        packages=packages,
        write_files=[common.first_boot_file("install-cni.sh"), common.first_boot_file("first-boot-check.sh")],
        runcmd=runcmd,
    )
    return common.dump_cloud_config(document)
