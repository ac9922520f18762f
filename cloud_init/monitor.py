"""User data for a regional monitor node: Docker plus a systemd unit running `iot monitor`.

The image reference and the container environment (REDIS_URL...) are not in user data: they are
pushed over SSH into files under /etc/iot (components/monitors.py), so a new image tag or a rotated
secret updates the node without replacing it.
"""

from __future__ import annotations

from cloud_init import common
from cloud_init.units import render_unit

UNIT_NAME = "iot-monitor.service"
ENV_FILE = "/etc/iot/monitor.env"  # container environment, 0600 (REDIS_URL is a secret)
IMAGE_FILE = "/etc/iot/monitor-image.env"  # IOT_MONITOR_IMAGE=<ref>, read by the unit itself
CONTAINER_NAME = "iot-monitor"
CONTAINER_PORT = 8000
HEALTH_PORT = 80  # Cloudflare reaches <name>.<domain>/health here


def monitor_unit() -> str:
    docker = "/usr/bin/docker"
    run = " ".join([
        docker, "run", "--rm", "--name", CONTAINER_NAME,
        "--env-file", ENV_FILE,
        "--publish", f"{HEALTH_PORT}:{CONTAINER_PORT}",
        # Unprivileged ICMP inside the container's network namespace.
        "--sysctl", '"net.ipv4.ping_group_range=0 2147483647"',  # systemd keeps a quoted word whole
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--read-only", "--tmpfs", "/tmp",
        "--ulimit", "nofile=65536:65536",
        "${IOT_MONITOR_IMAGE}", "iot", "monitor",
    ])
    return render_unit({
        "Unit": [
            ("Description", "my-iot-app regional monitor"),
            ("After", "docker.service network-online.target iot-block-metadata.service"),
            ("Requires", "docker.service"),
            ("Wants", "network-online.target"),
            ("ConditionPathExists", ENV_FILE),
            ("ConditionPathExists", IMAGE_FILE),
        ],
        "Service": [
            ("EnvironmentFile", IMAGE_FILE),
            ("ExecStartPre", f"-{docker} rm -f {CONTAINER_NAME}"),
            ("ExecStartPre", f"{docker} pull ${{IOT_MONITOR_IMAGE}}"),
            ("ExecStart", run),
            ("ExecStop", f"{docker} stop {CONTAINER_NAME}"),
            ("Restart", "on-failure"),
            ("RestartSec", "5"),
            ("TimeoutStartSec", "300"),
        ],
        "Install": [("WantedBy", "multi-user.target")],
    })


def render_monitor_user_data(hostname: str) -> str:
    """`#cloud-config` for one monitor node (same text for every provider). Contains no secret."""
    write_files = [
        common.sysctl_file(),
        common.modules_file(),
        common.script_file("block-metadata.sh"),
        common.script_file("install_files.py"),
        common.metadata_block_unit(),
        {"path": f"/etc/systemd/system/{UNIT_NAME}", "permissions": "0644", "content": monitor_unit()},
    ]
    document = common.cloud_config(
        hostname=hostname,
        sources={"docker": common.docker_source()},
        packages=[*common.docker_packages(), "iptables", "ca-certificates"],
        write_files=write_files,
        runcmd=common.base_runcmd(),
    )
    return common.dump_cloud_config(document)
