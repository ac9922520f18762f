"""Start the apps as real `iot` processes for end-to-end tests, and poll them with deadlines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from egress_targets import TEST_EGRESS_ALLOW_CIDRS

IOT = shutil.which("iot", path=str(Path(sys.executable).parent)) or "iot"
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"
# One "region" per monitor, each probing from its own loopback source address.
REGIONS = {"ashburn": "127.0.0.2", "helsinki": "127.0.0.3", "tokyo": "127.0.0.4"}
T = TypeVar("T")


def iot_env(**values: object) -> dict[str, str]:
    """The test's environment for an `iot` process: loopback targets allowed (the simulator, receivers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIM_", "APP_", "REGION", "MONITOR_"))}
    env["EGRESS_ALLOW_CIDRS"] = TEST_EGRESS_ALLOW_CIDRS
    env.update({k: str(v) for k, v in values.items()})
    return env


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    prefix: list[str] = field(default_factory=list)  # e.g. a command that runs `iot` under a hosts stub
    proc: subprocess.Popen = field(init=False)

    def start(self) -> Proc:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([*self.prefix, IOT, *self.args], env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def run_iot(args: list[str], env: dict[str, str], timeout: float = 60.0) -> None:
    done = subprocess.run([IOT, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"iot {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, procs: list[Proc] = (),
               interval: float = 0.25) -> T:
    """Poll `probe` until it returns a truthy value; fail naming `what` (and dead processes) at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: object = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"{p.name} exited with {p.proc.returncode} while waiting for {what}:\n{p.tail()}")
        try:
            value = probe()
            if value:
                return value
        except httpx.HTTPError as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


def wait_http_ok(url: str, proc: Proc, timeout: float = 30.0) -> None:
    wait_until(lambda: httpx.get(url, timeout=2).status_code == 200, timeout, f"{proc.name} at {url}", [proc],
               interval=0.1)


def create_tenant(tracker_url: str, slug: str) -> str:
    """Create a tenant through the admin API; return its API key."""
    response = httpx.post(f"{tracker_url}/v1/tenants", json={"slug": slug},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()["api_key"]
