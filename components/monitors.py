"""MonitorFleet: one small server per configured region, outside the cluster, running `iot monitor`.

Hetzner serves ash, hil, sin and the EU; Linode serves what Hetzner does not (Tokyo, Osaka).
Both get the same first-boot user data (Docker); the systemd unit, the image reference, the
container environment (REDIS_URL is a secret) and registry credentials are pushed over SSH via stdin
(components/remote.py provision()), so every later edit reaches the running node.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud
import pulumi_linode as linode

from cloud_init.files import restart
from cloud_init.monitor import (
    CONTAINER_PORT,
    DOCKER_CONFIG_DIR,
    ENV_FILE,
    UNIT_NAME,
    UNITS,
    monitor_node_files,
    render_monitor_user_data,
)
from components import remote
from components.cluster import SERVER_IGNORE_CHANGES, check_server_types
from components.config import MonitorConfig, StackConfig
from components.firewall import cloudflare_ip_ranges, hcloud_rules, linode_inbounds, monitor_rules
from components.registry import docker_config
from components.secrets import ClusterSecrets

LINODE_IGNORE_CHANGES = ["metadatas", "image", "authorized_keys"]
# /metrics on its own listener inside the container; the unit publishes only CONTAINER_PORT, so the
# node's public port serves /health alone (reach /metrics over SSH: `docker exec` or the container IP).
METRICS_PORT = 9100


@dataclass(frozen=True)
class MonitorNode:
    name: str
    provider: str
    location: str
    public_ipv4: pulumi.Output[str]
    hostname: str = ""  # <name>.<domain>, where Cloudflare routes its /health


def monitor_hostname(stack: str, name: str) -> str:
    return f"iot-{stack}-monitor-{name}"


def monitor_env(config: StackConfig, monitor: MonitorConfig) -> pulumi.Output[str]:
    """The container's environment file (secret: it carries REDIS_URL)."""
    plain = {
        "REGION": monitor.name,
        "MONITOR_NAMES": ",".join(config.monitor_names),
        "DOMAIN": config.domain,
        "APP_HOST": "0.0.0.0",
        "APP_PORT": str(CONTAINER_PORT),
        "METRICS_PORT": str(METRICS_PORT),
        "LOG_LEVEL": "info",
    }
    return pulumi.Output.secret(config.redis_url.apply(
        lambda redis_url: "".join(f"{k}={v}\n" for k, v in {**plain, "REDIS_URL": redis_url}.items())
    ))


class MonitorFleet(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        secrets: ClusterSecrets,
        opts: pulumi.ResourceOptions | None = None,
        *,
        ssh_key: hcloud.SshKey | None = None,
    ) -> None:
        """`ssh_key`: the project's deploy key (Hetzner refuses a second key with the same fingerprint)."""
        super().__init__("iot:monitors:MonitorFleet", name, None, opts)
        self._config = config
        self._secrets = secrets
        labels = {"app": "iot", "stack": config.stack, "role": "monitor"}
        hetzner = [m for m in config.monitors if m.provider == "hetzner"]
        linodes = [m for m in config.monitors if m.provider == "linode"]
        cf_v4, cf_v6 = cloudflare_ip_ranges()
        rules = monitor_rules(config.admin_cidrs, cf_v4 + cf_v6)

        self.nodes: list[MonitorNode] = []
        if hetzner:
            check_server_types([
                (m.server_type, m.location, f"monitors[{i}].serverType")
                for i, m in enumerate(config.monitors) if m.provider == "hetzner"
            ])
            self._ssh_key = ssh_key or hcloud.SshKey(
                f"{name}-deploy-key", name=f"iot-{config.stack}-monitor-deploy",
                public_key=secrets.ssh_public_key, labels=labels, opts=pulumi.ResourceOptions(parent=self),
            )
            self.hcloud_firewall = hcloud.Firewall(
                f"{name}-firewall", name=f"iot-{config.stack}-monitors", labels=labels,
                rules=hcloud_rules(rules), opts=pulumi.ResourceOptions(parent=self),
            )
            for monitor in hetzner:
                self.nodes.append(self._hetzner_node(name, monitor, labels))
        if linodes:
            # Attached at creation (firewall_id), so the instance never boots unfiltered.
            self.linode_firewall = linode.Firewall(
                f"{name}-linode-firewall", label=f"iot-{config.stack}-monitors",
                inbound_policy="DROP", outbound_policy="ACCEPT", inbounds=linode_inbounds(rules),
                tags=[f"iot-{config.stack}"], opts=pulumi.ResourceOptions(parent=self),
            )
            for monitor in linodes:
                instance = self._linode_instance(name, monitor)
                self.nodes.append(self._configure(name, monitor, instance, instance.ipv4s.apply(lambda ips: ips[0])))

        order = {m.name: i for i, m in enumerate(config.monitors)}
        self.nodes.sort(key=lambda n: order[n.name])
        self.register_outputs({
            "monitors": {n.name: n.public_ipv4 for n in self.nodes},
        })

    def _hetzner_node(self, name: str, monitor: MonitorConfig, labels: dict[str, str]) -> MonitorNode:
        config = self._config
        hostname = monitor_hostname(config.stack, monitor.name)
        server = hcloud.Server(
            f"{name}-{monitor.name}",
            name=hostname,
            server_type=monitor.server_type,
            image=monitor.image,
            location=monitor.location,
            public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
            firewall_ids=[self.hcloud_firewall.id.apply(int)],
            # The deploy window (deploy/window.py) adds a label-selector firewall for one job: not drift.
            ignore_remote_firewall_ids=True,
            ssh_keys=[self._ssh_key.id],
            user_data=render_monitor_user_data(hostname),
            labels={**labels, "monitor": monitor.name, "location": monitor.location},
            delete_protection=config.protect,
            rebuild_protection=config.protect,
            opts=pulumi.ResourceOptions(parent=self, protect=config.protect, ignore_changes=SERVER_IGNORE_CHANGES),
        )
        return self._configure(name, monitor, server, server.ipv4_address)

    def _linode_instance(self, name: str, monitor: MonitorConfig) -> linode.Instance:
        config = self._config
        hostname = monitor_hostname(config.stack, monitor.name)
        user_data = base64.b64encode(render_monitor_user_data(hostname).encode()).decode()
        instance = linode.Instance(
            f"{name}-{monitor.name}",
            label=hostname,
            region=monitor.location,
            type=monitor.server_type,
            image=monitor.image,
            authorized_keys=[self._secrets.ssh_public_key],
            metadatas=[linode.InstanceMetadataArgs(user_data=user_data)],
            firewall_id=self.linode_firewall.id.apply(int),
            tags=[f"iot-{config.stack}", "iot-monitor"],
            booted=True,
            opts=pulumi.ResourceOptions(parent=self, protect=config.protect, ignore_changes=LINODE_IGNORE_CHANGES),
        )
        return instance

    def _configure(
        self, name: str, monitor: MonitorConfig, host: pulumi.Resource, public_ipv4: pulumi.Output[str],
    ) -> MonitorNode:
        """Wait for first boot, push the unit, env and image files, (re)start the monitor on any change."""
        config = self._config
        files = [
            *(f.entry() for f in monitor_node_files(config.images.ref("app"))),
            remote.file_entry(ENV_FILE, monitor_env(config, monitor), "0600", on_change=[restart(UNIT_NAME)]),
            remote.file_entry(f"{DOCKER_CONFIG_DIR}/config.json", docker_config(config.registry), "0600"),
        ]
        remote.provision(
            f"{name}-{monitor.name}", host=host, address=public_ipv4, user=config.ssh_user,
            private_key=self._secrets.ssh_private_key, files=files, start=remote.apply_command(UNITS),
            restart_on_change=True, parent=self,
        )
        return MonitorNode(name=monitor.name, provider=monitor.provider, location=monitor.location,
                           public_ipv4=public_ipv4, hostname=f"{monitor.name}.{config.domain}")
