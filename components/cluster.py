"""AppCluster: the EU Hetzner cluster, each node a Consul server + Nomad server and client.

Network + eu-central subnet with fixed private IPs (Consul/Nomad retry_join needs them: there is
no Hetzner cloud auto-join), spread placement group, one firewall, then per node: user data with
no secrets, a node certificate, and SSH steps that wait for cloud-init, push secrets via stdin and
start the agents. The first node finally bootstraps ACLs and waits until every client is ready.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud
from pulumi_command import remote as command_remote

from cloud_init.cluster import (
    CONSUL_DATACENTER,
    CONSUL_SECRET_FILES,
    NOMAD_REGION,
    NOMAD_SECRET_FILES,
    ClusterNodeSpec,
    render_cluster_user_data,
)
from components import remote
from components.config import ConfigError, StackConfig
from components.firewall import cloudflare_ip_ranges, cluster_rules, hcloud_rules
from components.secrets import ClusterSecrets

NETWORK_CIDR = "10.0.0.0/16"
SUBNET_CIDR = "10.0.1.0/24"
NETWORK_ZONE = "eu-central"
FIRST_HOST = 11  # 10.0.1.11, .12, ... (.1 is Hetzner's gateway)
# Servers survive config edits: user data, image and keys only matter at first boot.
SERVER_IGNORE_CHANGES = ["user_data", "image", "ssh_keys"]


@dataclass(frozen=True)
class ClusterNode:
    name: str
    location: str
    private_ip: str
    public_ipv4: pulumi.Output[str]
    server: hcloud.Server
    public_ipv6: pulumi.Output[str] | None = None


def private_ip(index: int) -> str:
    return str(ipaddress.ip_network(SUBNET_CIDR)[FIRST_HOST + index])


def node_name(stack: str, index: int, location: str) -> str:
    return f"iot-{stack}-{index + 1}-{location}"


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


def _json_secret(data: pulumi.Input[dict]) -> pulumi.Output[str]:
    return pulumi.Output.secret(pulumi.Output.from_input(data).apply(lambda d: json.dumps(d, indent=2, sort_keys=True)))


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
        check_server_types([(cluster.server_type, loc, "cluster.serverType") for loc in cluster.locations])
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

        server_ips = tuple(private_ip(i) for i in range(len(cluster.locations)))
        self.nodes: list[ClusterNode] = []
        started: list[pulumi.Resource] = []
        connections = []
        for index, location in enumerate(cluster.locations):
            node, start, conn = self._node(name, config, secrets, index, location, server_ips, labels)
            self.nodes.append(node)
            started.append(start)
            connections.append(conn)

        first = self.nodes[0]
        self.ready = remote.run(
            f"{name}-bootstrap",
            conn=connections[0],
            user=config.ssh_user,
            create=remote.bootstrap_command(len(self.nodes)),
            stdin=remote.lines([
                secrets.consul_management_token,
                secrets.consul_agent_token,
                secrets.nomad_consul_token,
                secrets.consul_catalog_token,
                secrets.nomad_bootstrap_token,
            ]),
            parent=self,
            depends_on=started,
            deleted_with=first.server,
            timeout="30m",
        )
        self.nomad_address: pulumi.Output[str] = first.public_ipv4.apply(lambda ip: f"https://{ip}:4646")
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
        index: int,
        location: str,
        server_ips: tuple[str, ...],
        labels: dict[str, str],
    ) -> tuple[ClusterNode, pulumi.Resource, command_remote.ConnectionArgs]:
        hostname = node_name(config.stack, index, location)
        ip = server_ips[index]
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
            ip_addresses=["127.0.0.1", ip, server.ipv4_address], parent=self,
        )
        consul_secrets = _json_secret({
            "encrypt": secrets.consul_gossip_key,
            "acl": {"tokens": {"initial_management": secrets.consul_management_token,
                               "agent": secrets.consul_agent_token}},
        })
        nomad_secrets = _json_secret({
            "server": {"encrypt": secrets.nomad_gossip_key},
            "consul": {"token": secrets.nomad_consul_token},
        })
        files = [
            remote.file_entry(CONSUL_SECRET_FILES["ca"], secrets.ca_cert_pem, "0644", "consul"),
            remote.file_entry(CONSUL_SECRET_FILES["cert"], cert.cert_pem, "0644", "consul"),
            remote.file_entry(CONSUL_SECRET_FILES["key"], cert.key_pem, "0600", "consul"),
            remote.file_entry(CONSUL_SECRET_FILES["config"], consul_secrets, "0600", "consul"),
            remote.file_entry(NOMAD_SECRET_FILES["ca"], secrets.ca_cert_pem, "0644"),
            remote.file_entry(NOMAD_SECRET_FILES["cert"], cert.cert_pem, "0644"),
            remote.file_entry(NOMAD_SECRET_FILES["key"], cert.key_pem, "0600"),
            remote.file_entry(NOMAD_SECRET_FILES["config"], nomad_secrets, "0600"),
        ]
        conn = remote.connection(server.ipv4_address, config.ssh_user, secrets.ssh_private_key)
        common = {"conn": conn, "user": config.ssh_user, "parent": self, "deleted_with": server}
        wait = remote.run(f"{name}-{hostname}-wait-cloud-init", create=remote.WAIT_CLOUD_INIT,
                          timeout="30m", **common)
        bundle = remote.files_bundle(files)
        push = remote.run(f"{name}-{hostname}-push-secrets", create=remote.INSTALL_FILES,
                          stdin=bundle, depends_on=[wait], **common)
        start = remote.run(f"{name}-{hostname}-start-agents", create=remote.START_AGENTS,
                           depends_on=[push], triggers=[remote.content_digest(bundle)], **common)
        node = ClusterNode(name=hostname, location=location, private_ip=ip, public_ipv4=server.ipv4_address,
                           server=server, public_ipv6=server.ipv6_address)
        return node, start, conn
