"""Files pushed to a node over SSH after first boot, and what a change to each one requires.

Everything that may change during a node's life (agent configs, unit drop-ins, policies, scripts,
certificates, keys) travels in one bundle per node (components/remote.py). The installer writes the
files that differ and records the actions their `on_change` names; `iot-apply` then carries out those
actions in a fixed order: a certificate change is a reload, a new agent setting a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAEMON_RELOAD = "daemon-reload"  # a unit or drop-in changed
SYSCTL = "sysctl"  # kernel modules or sysctls changed
PACKAGES = "packages"  # pinned agent versions changed: install them, restart the agents
_ACTION_RE = re.compile(r"^(daemon-reload|sysctl|packages|(restart|reload):[a-z0-9@._-]+\.service)$")


def restart(unit: str) -> str:
    return f"restart:{unit}"


def reload(unit: str) -> str:
    """SIGHUP through the unit's ExecReload: what Consul and Nomad re-read without restarting."""
    return f"reload:{unit}"


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: str
    mode: str = "0644"
    owner: str = "root"
    on_change: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for action in self.on_change:
            if not _ACTION_RE.match(action):
                raise ValueError(f"{self.path}: unknown on_change action {action!r}")

    def entry(self) -> dict[str, object]:
        """The bundle entry `iot-install-files` reads."""
        return {"path": self.path, "mode": self.mode, "owner": self.owner, "content": self.content,
                "on_change": list(self.on_change)}
