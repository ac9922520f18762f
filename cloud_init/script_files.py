"""The shell/Python scripts shipped to hosts: kept as real files so tests lint and run each one."""

from pathlib import Path

SCRIPTS_DIR = Path(__file__).parent / "scripts"
POLICIES_DIR = Path(__file__).parent / "policies"

# file in scripts/ -> path on the host. install_files.py is not installed: the push runs it inline.
INSTALLED_SCRIPTS: dict[str, str] = {
    "install-cni.sh": "/usr/local/sbin/iot-install-cni",
    "first-boot-check.sh": "/usr/local/sbin/iot-first-boot-check",
    "block-metadata.sh": "/usr/local/sbin/iot-block-metadata",
    "apply.sh": "/usr/local/sbin/iot-apply",
    "health-gate.sh": "/usr/local/sbin/iot-health-gate",
    "cluster-bootstrap.sh": "/usr/local/sbin/iot-cluster-bootstrap",
    "node-leave.sh": "/usr/local/sbin/iot-node-leave",
}


def script_text(name: str) -> str:
    return (SCRIPTS_DIR / name).read_text()


def installed_path(name: str) -> str:
    return INSTALLED_SCRIPTS[name]


def nomad_policy_text(name: str) -> str:
    return (POLICIES_DIR / f"{name}.hcl").read_text()
