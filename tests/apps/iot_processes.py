"""Helpers to run the apps as real `iot` processes in tests (used by tests/apps/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from egress_targets import TEST_EGRESS_ALLOW_CIDRS
from servers import free_port, free_port_range

IOT = shutil.which("iot", path=str(Path(sys.executable).parent)) or "iot"
ADMIN_TOKEN = "test-admin-token-0123456789"


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200 (or the process dies, or the deadline passes)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s (last: {last!r})")


@dataclass
class IotProcess:
    command: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen = field(init=False)

    def start(self) -> IotProcess:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([IOT, *self.command], env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def iot_env(**values: str | int) -> dict[str, str]:
    """The test's environment for an `iot` process: loopback targets allowed (simulator, test servers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIM_", "APP_"))}
    env["EGRESS_ALLOW_CIDRS"] = TEST_EGRESS_ALLOW_CIDRS
    env.update({k: str(v) for k, v in values.items()})
    return env


@dataclass
class Tracker:
    url: str
    database_url: str
    redis_url: str
    admin_token: str
    process: IotProcess

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def create_tenant(self, slug: str) -> str:
        """Create a tenant; return its API key."""
        with self.client(self.admin_token) as c:
            response = c.post("/v1/tenants", json={"slug": slug})
            assert response.status_code == 201, response.text
            return response.json()["api_key"]


def start_tracker(database_url: str, redis_url: str, log_dir: Path, **env: str | int) -> Tracker:
    """`iot tracker` on a free port; `env` adds or overrides settings (e.g. QUOTA_DEVICES=3)."""
    port = free_port()
    process = IotProcess(
        ["tracker"],
        iot_env(DATABASE_URL=database_url, REDIS_URL=redis_url, APP_PORT=port, APP_HOST="127.0.0.1",
                ADMIN_TOKEN=ADMIN_TOKEN, MONITOR_NAMES="frankfurt,tokyo", **env),
        log_dir / f"tracker-{port}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc=process.proc)
    except Exception:
        process.stop()
        raise RuntimeError(f"tracker did not start:\n{process.log()}") from None
    return Tracker(url, database_url, redis_url, ADMIN_TOKEN, process)


@dataclass
class Simulator:
    control_url: str
    base_port: int
    devices: int
    tcp_devices: int
    process: IotProcess

    def control(self) -> httpx.Client:
        return httpx.Client(base_url=self.control_url, timeout=30.0)


def start_simulator(log_dir: Path, devices: int = 10, tcp_devices: int = 0, push_url: str | None = None) -> Simulator:
    """`iot simulate` on a free port range, returned once its control API answers."""
    control_port = free_port()
    base_port = free_port_range(devices + tcp_devices)
    args = ["simulate", "--devices", str(devices), "--tcp-devices", str(tcp_devices),
            "--base-port", str(base_port), "--control-port", str(control_port)]
    if push_url:
        args += ["--push-url", push_url]
    process = IotProcess(args, iot_env(), log_dir / f"simulate-{control_port}.log").start()
    url = f"http://127.0.0.1:{control_port}"
    try:
        wait_http(f"{url}/health", proc=process.proc)
    except Exception:
        process.stop()
        raise RuntimeError(f"simulator did not start:\n{process.log()}") from None
    return Simulator(url, base_port, devices, tcp_devices, process)


