"""The product's pipeline as real processes for the browser test: simulator, two monitors, worker, dashboard."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from egress_targets import TEST_EGRESS_ALLOW_CIDRS
from servers import free_port, free_port_range

from dashboard.harness import IOT


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (httpx.HTTPError, OSError) as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s (last error: {last_error!r})")


@dataclass
class Processes:
    log_dir: Path
    started: list[tuple[str, subprocess.Popen, Path]] = field(default_factory=list)

    def start(self, name: str, command: list[str], **env: str | int) -> subprocess.Popen:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("SIM_", "APP_", "SEED_"))}
        environment["EGRESS_ALLOW_CIDRS"] = TEST_EGRESS_ALLOW_CIDRS  # simulator and tracker on loopback
        environment.update({k: str(v) for k, v in env.items()})
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(IOT), *command], env=environment, stdout=out, stderr=subprocess.STDOUT)
        self.started.append((name, proc, log))
        return proc

    def wait_http(self, name: str, url: str, timeout: float = 30.0) -> None:
        proc = next(p for n, p, _ in self.started if n == name)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")
            return httpx.get(url, timeout=1).status_code == 200

        wait_until(ready, timeout, f"{name} answering {url}")

    def log(self, name: str) -> str:
        return next(log for n, _, log in self.started if n == name).read_text(errors="replace")

    def stop_all(self) -> None:
        for _, proc, _ in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in reversed(self.started):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@dataclass(frozen=True)
class Pipeline:
    dashboard_port: int
    simulator_control: str
    simulator_base_port: int
    processes: Processes


def start_pipeline(processes: Processes, database_url: str, redis_url: str, devices: int) -> Pipeline:
    common = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "APP_HOST": "127.0.0.1",
              "MONITOR_NAMES": "frankfurt,amsterdam", "DOMAIN": "localhost", "LOG_LEVEL": "info"}
    control_port, base_port = free_port(), free_port_range(devices + 4)
    processes.start("simulator", ["simulate", "--devices", str(devices), "--base-port", str(base_port),
                                  "--control-port", str(control_port)])
    processes.wait_http("simulator", f"http://127.0.0.1:{control_port}/health")
    for region in ("frankfurt", "amsterdam"):
        port = free_port()
        processes.start(region, ["monitor"], **common, REGION=region, APP_PORT=port, HEARTBEAT_SECONDS=1)
        processes.wait_http(region, f"http://127.0.0.1:{port}/health")
    worker_port = free_port()
    processes.start("worker", ["worker"], **common, APP_PORT=worker_port, REGION_ALIVE_SECONDS=5)
    processes.wait_http("worker", f"http://127.0.0.1:{worker_port}/health")
    dashboard_port = free_port()
    processes.start("dashboard", ["dashboard"], **common, APP_PORT=dashboard_port,
                    SESSION_SECRET="browser-test-session-secret-0123456789")
    processes.wait_http("dashboard", f"http://127.0.0.1:{dashboard_port}/health")
    return Pipeline(dashboard_port, f"http://127.0.0.1:{control_port}", base_port, processes)
