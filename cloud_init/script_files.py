"""The shell/Python scripts shipped to hosts: kept as real files so tests lint each one."""

from pathlib import Path

SCRIPTS_DIR = Path(__file__).parent / "scripts"

# file in scripts/ -> path installed on the host by cloud-init
INSTALLED_SCRIPTS: dict[str, str] = {
    "install-cni.sh": "/usr/local/sbin/iot-install-cni",
    "block-metadata.sh": "/usr/local/sbin/iot-block-metadata",
    "cluster-bootstrap.sh": "/usr/local/sbin/iot-cluster-bootstrap",
    "install_files.py": "/usr/local/sbin/iot-install-files",
}


def script_text(name: str) -> str:
    return (SCRIPTS_DIR / name).read_text()


def installed_path(name: str) -> str:
    return INSTALLED_SCRIPTS[name]
