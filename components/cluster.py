"""AppCluster: the EU Hetzner cluster, each node a Consul server + Nomad server and client.

Network + eu-central subnet with fixed private IPs (Consul/Nomad retry_join needs them: there is
no Hetzner cloud auto-join), spread placement group, one firewall, then per node: first-boot user
data (no secrets, ignored after creation), a node certificate, and SSH steps:

    wait for first boot -> push every file the node may ever need changed (digest = trigger)
      -> start (first start only) ... -> apply -> health gate   (rolling: node by node)
      -> bootstrap ACLs and wait for ready clients              (after the last gate)

A config change re-pushes the files of every affected node at once (writing files restarts
nothing), then applies them one node at a time: node N+1's apply step waits for node N's health
gate. Removing a node runs its leave step (drain, leave Raft) before its server is deleted.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud
from pulumi_command import remote as command_remote

from cloud_init.cluster import (
    AGENT_UNITS,
    CONSUL_DATACENTER,
    NOMAD_REGION,
    ClusterNodeSpec,
    render_cluster_user_data,
)
from components import remote
from components.cluster_files import cluster_node_bundle
from components.config import ClusterNodeConfig, ConfigError, StackConfig
from components.firewall import cloudflare_ip_ranges, cluster_rules, hcloud_rules
from components.registry import docker_config
from components.secrets import ClusterSecrets

NETWORK_CIDR = "10.0.0.0/16"
SUBNET_CIDR = "10.0.1.0/24"
NETWORK_ZONE = "eu-central"
HOST_OFFSET = 10  # node id 1 -> 10.0.1.11, id 2 -> .12, ... (.1 is Hetzner's gateway)
# Servers survive config edits: user data, image and keys only matter at first boot.
SERVER_IGNORE_CHANGES = ["user_data", "image", "ssh_keys"]
GATE_TIMEOUT = "15m"
# The leave step dials a node that may be gone: give up after a few attempts (docs/operator-manual.md: Day-2 operations).
LEAVE_DIAL_ATTEMPTS = 8


@dataclass(frozen=True)
class ClusterNode:
    name: str
    location: str
    private_ip: str
    public_ipv4: pulumi.Output[str]
    server: hcloud.Server
    public_ipv6: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class _Provisioned:
    node: ClusterNode
    steps: remote.Provisioned


def private_ip(node_id: int) -> str:
    """A node's fixed private IP, from its stable id (never from its position in the config list)."""
    return str(ipaddress.ip_network(SUBNET_CIDR)[HOST_OFFSET + node_id])


def node_name(stack: str, node_id: int, location: str) -> str:
    return f"iot-{stack}-{node_id}-{location}"


def node_dns_names(hostname: str) -> list[str]:
    return [
        hostname,
        "localhost",
        f"server.{NOMAD_REGION}.nomad",
        f"client.{NOMAD_REGION}.nomad",
        f"server.{CONSUL_DATACENTER}.consul",
    ]


def server_type_problem(server_type: str, location: str, offered: Sequence[object], key: str) -> str | None:
    """Why `server_type` cannot run in `location` per hcloud.get_server_type, or None.

    An empty `offered` list (no data) is not a problem: the API will answer at creation time.
    """
    if not offered:
        return None
    by_name = {getattr(loc, "name", None): loc for loc in offered}
    entry = by_name.get(location)
    if entry is None or not getattr(entry, "available", True) or getattr(entry, "is_deprecated", False):
        where = sorted(name for name, loc in by_name.items() if name and getattr(loc, "available", True)
                       and not getattr(loc, "is_deprecated", False))
        return (f"iot:{key} {server_type!r} is not available in {location!r} right now; "
                f"it is offered in {', '.join(where) or 'no location'}: pick another server type or location")
    return None


def check_server_types(wanted: Sequence[tuple[str, str, str]]) -> None:
    """Ask the Hetzner API (at preview) whether each (server type, location, config key) can be bought."""
    offered: dict[str, Sequence[object]] = {}
    for server_type, location, key in wanted:
        if server_type not in offered:
            offered[server_type] = hcloud.get_server_type(name=server_type).locations or []
        problem = server_type_problem(server_type, location, offered[server_type], key)
        if problem:
            raise ConfigError(problem)


def _combined_digest(digests: Sequence[pulumi.Output[str]]) -> pulumi.Output[str]:
    return pulumi.Output.secret(pulumi.Output.all(*digests).apply(
        lambda values: hashlib.sha256("".join(values).encode()).hexdigest()))


class AppCluster(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        secrets: ClusterSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("iot:cluster:AppCluster", name, None, opts)
        cluster = config.cluster
        protect = config.protect
        check_server_types([(cluster.server_type, node.location, "cluster.serverType") for node in cluster.nodes])
        labels = {"app": "iot", "stack": config.stack, "role": "cluster"}
        child = pulumi.ResourceOptions(parent=self, protect=protect)

        self.network = hcloud.Network(
            f"{name}-network", name=f"iot-{config.stack}", ip_range=NETWORK_CIDR, labels=labels,
            delete_protection=protect, opts=child,
        )
        self.subnet = hcloud.NetworkSubnet(
            f"{name}-subnet", network_id=self.network.id.apply(int), type="cloud",
            network_zone=NETWORK_ZONE, ip_range=SUBNET_CIDR, opts=child,
        )
        self.placement_group = hcloud.PlacementGroup(
            f"{name}-spread", name=f"iot-{config.stack}-cluster", type="spread", labels=labels,
            opts=pulumi.ResourceOptions(parent=self),
        )
        cf_v4, cf_v6 = cloudflare_ip_ranges()
        self.firewall = hcloud.Firewall(
            f"{name}-firewall", name=f"iot-{config.stack}-cluster", labels=labels,
            rules=hcloud_rules(cluster_rules(config.admin_cidrs, cf_v4 + cf_v6)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ssh_key = hcloud.SshKey(
            f"{name}-deploy-key", name=f"iot-{config.stack}-deploy", public_key=secrets.ssh_public_key,
            labels=labels, opts=pulumi.ResourceOptions(parent=self),
        )

        server_ips = tuple(private_ip(node.id) for node in cluster.nodes)
        registry_auth = docker_config(config.registry)
        provisioned = [
            self._node(name, config, secrets, spec, server_ips, labels, registry_auth)
            for spec in cluster.nodes  # id order: the rollout order never depends on the list order
        ]
        self.nodes: list[ClusterNode] = [p.node for p in provisioned]

        # Rolling: node N+1 applies its pushed changes only once node N passed its health gate.
        previous_gate: pulumi.Resource | None = None
        for p in provisioned:
            node, steps = p.node, p.steps
            common = {"conn": steps.conn, "user": config.ssh_user, "parent": self, "deleted_with": node.server}
            apply = remote.run(
                f"{name}-{node.name}-apply", create=remote.apply_command(AGENT_UNITS), triggers=[steps.digest],
                depends_on=[steps.push, steps.start, *([previous_gate] if previous_gate else [])], **common,
            )
            previous_gate = remote.run(
                f"{name}-{node.name}-gate", create=remote.HEALTH_GATE, triggers=[steps.digest],
                depends_on=[apply], timeout=GATE_TIMEOUT, **common,
            )

        first = provisioned[0]
        self.ready = remote.run(
            f"{name}-bootstrap",
            conn=first.steps.conn,
            user=config.ssh_user,
            create=remote.bootstrap_command(len(self.nodes)),
            stdin=remote.lines([
                secrets.consul_management_token,
                secrets.consul_agent_token,
                secrets.nomad_consul_token,
                secrets.consul_catalog_token,
                secrets.nomad_bootstrap_token,
                secrets.nomad_deployer_accessor,
                secrets.nomad_deployer_token,
                secrets.nomad_operator_accessor,
                secrets.nomad_operator_token,
            ]),
            # Re-run after any rollout: upserts are idempotent, and it ends by checking every client is ready.
            triggers=[_combined_digest([p.steps.digest for p in provisioned])],
            parent=self,
            depends_on=[previous_gate, first.steps.push] if previous_gate else [first.steps.push],
            deleted_with=first.node.server,
            timeout="30m",
        )
        self.nomad_address: pulumi.Output[str] = first.node.public_ipv4.apply(lambda ip: f"https://{ip}:4646")
        self.register_outputs({
            "nomadAddress": self.nomad_address,
            "publicIpv4s": [n.public_ipv4 for n in self.nodes],
            "privateIps": [n.private_ip for n in self.nodes],
        })

    def _node(
        self,
        name: str,
        config: StackConfig,
        secrets: ClusterSecrets,
        spec_config: ClusterNodeConfig,
        server_ips: tuple[str, ...],
        labels: dict[str, str],
        registry_auth: pulumi.Output[str],
    ) -> _Provisioned:
        location = spec_config.location
        hostname = node_name(config.stack, spec_config.id, location)
        ip = private_ip(spec_config.id)
        spec = ClusterNodeSpec(
            hostname=hostname, datacenter=location, private_ip=ip, private_cidr=SUBNET_CIDR,
            server_ips=server_ips, consul_version=config.versions.consul,
            nomad_version=config.versions.nomad, cni_version=config.versions.cni,
        )
        server = hcloud.Server(
            f"{name}-{hostname}",
            name=hostname,
            server_type=config.cluster.server_type,
            image=config.cluster.image,
            location=location,
            networks=[hcloud.ServerNetworkArgs(network_id=self.network.id.apply(int), ip=ip)],
            public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
            firewall_ids=[self.firewall.id.apply(int)],
            # The deploy window (deploy/window.py) adds a label-selector firewall for one job: not drift.
            ignore_remote_firewall_ids=True,
            placement_group_id=self.placement_group.id.apply(int),
            ssh_keys=[self.ssh_key.id],
            user_data=render_cluster_user_data(spec),
            labels={**labels, "location": location},
            delete_protection=config.protect,
            rebuild_protection=config.protect,
            opts=pulumi.ResourceOptions(
                parent=self, protect=config.protect, ignore_changes=SERVER_IGNORE_CHANGES,
                depends_on=[self.subnet],
            ),
        )
        cert = secrets.issue_certificate(
            f"{name}-{hostname}-tls", common_name=hostname, dns_names=node_dns_names(hostname),
            ip_addresses=["127.0.0.1", ip, server.ipv4_address], parent=self, stagger=spec_config.id - 1,
        )
        steps = remote.provision(
            f"{name}-{hostname}", host=server, address=server.ipv4_address, user=config.ssh_user,
            private_key=secrets.ssh_private_key, files=cluster_node_bundle(spec, secrets, cert, registry_auth),
            start=remote.apply_command(AGENT_UNITS, start_only=True), restart_on_change=False, parent=self,
        )
        # Runs `iot-node-leave` when the node is removed, before its server is deleted.
        self._leave_step(name, config, secrets, hostname, server, depends_on=[steps.push])
        node = ClusterNode(name=hostname, location=location, private_ip=ip, public_ipv4=server.ipv4_address,
                           server=server, public_ipv6=server.ipv6_address)
        return _Provisioned(node=node, steps=steps)

    def _leave_step(
        self, name: str, config: StackConfig, secrets: ClusterSecrets, hostname: str, server: hcloud.Server,
        depends_on: Sequence[pulumi.Resource],
    ) -> command_remote.Command:
        conn = remote.connection(server.ipv4_address, config.ssh_user, secrets.ssh_private_key,
                                 dial_error_limit=LEAVE_DIAL_ATTEMPTS)
        return remote.run(
            f"{name}-{hostname}-leave", conn=conn, user=config.ssh_user, create=remote.NO_OP,
            delete=remote.NODE_LEAVE, parent=self, deleted_with=None, depends_on=depends_on,
        )
