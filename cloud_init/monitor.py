"""Files of a regional monitor node: first-boot user data (Docker) and the pushed unit running
`iot monitor`.

The unit, the image reference, the container environment (REDIS_URL is a secret) and the registry
credentials are pushed over SSH into /etc (components/monitors.py), so a new image tag, a rotated
secret or an edited unit reaches the running node without replacing it.
"""

from __future__ import annotations

from cloud_init import common
from cloud_init.files import DAEMON_RELOAD, NodeFile, restart
from cloud_init.script_files import installed_path
from cloud_init.units import render_unit

UNIT_NAME = "iot-monitor.service"
UNITS = (common.METADATA_BLOCK_UNIT, UNIT_NAME)  # the order iot-apply handles them
ENV_FILE = "/etc/iot/monitor.env"  # container environment, 0600 (REDIS_URL is a secret)
IMAGE_FILE = "/etc/iot/monitor-image.env"  # IOT_MONITOR_IMAGE=<ref>, read by the unit itself
DOCKER_CONFIG_DIR = "/etc/iot/docker"  # config.json: registry credentials for `docker pull` (0600)
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
            ("After", f"docker.service network-online.target {common.METADATA_BLOCK_UNIT}"),
            ("Requires", "docker.service"),
            ("Wants", "network-online.target"),
            ("ConditionPathExists", ENV_FILE),
            ("ConditionPathExists", IMAGE_FILE),
        ],
        "Service": [
            ("EnvironmentFile", IMAGE_FILE),
            # `docker pull` logs in with the pushed credentials (iot:registry), as `docker login` would.
            ("Environment", f"DOCKER_CONFIG={DOCKER_CONFIG_DIR}"),
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


def image_env(image_ref: str) -> str:
    return f"IOT_MONITOR_IMAGE={image_ref}\n"


def monitor_node_files(image_ref: str) -> list[NodeFile]:
    """Every public file a monitor node gets pushed (the env file and credentials are secrets)."""
    return [
        *common.host_node_files(),
        NodeFile(f"/etc/systemd/system/{UNIT_NAME}", monitor_unit(), on_change=(DAEMON_RELOAD, restart(UNIT_NAME))),
        NodeFile(IMAGE_FILE, image_env(image_ref), on_change=(restart(UNIT_NAME),)),
    ]


def render_monitor_user_data(hostname: str) -> str:
    """`#cloud-config` for one monitor node (same text for every provider): first boot only, no secret."""
    runcmd = common.first_boot_runcmd([
        common.step("enable Docker", "systemctl", "enable", "--now", "docker.service"),
        common.step("check Docker", installed_path("first-boot-check.sh"), "docker.service"),
    ])
    document = common.cloud_config(
        hostname=hostname,
        sources={"docker": common.docker_source()},
        packages=[*common.docker_packages(), "iptables", "ca-certificates"],
        write_files=[common.first_boot_file("first-boot-check.sh")],
        runcmd=runcmd,
    )
    return common.dump_cloud_config(document)
