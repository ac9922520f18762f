"""Start the apps as real `iot` processes in tests, and poll them with deadlines (every test area uses this).

- `Proc`: one `iot <args>` process with its log in a file; `stop()` terminates it (kill after a grace).
- `Procs`: the processes of one test sharing settings; `service()` starts an HTTP service on a free port
  (picking again when another process on this shared machine took it) and waits for its /health.
- `iot_env`, `run_iot`, `wait_until`, `wait_http_ok`, `create_tenant`: the small pieces.
- `start_tracker`, `start_simulator`: the two services the app tests start on their own.
"""

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
from servers import free_port, free_port_range

IOT = shutil.which("iot", path=str(Path(sys.executable).parent)) or "iot"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
# One "region" per monitor, each probing from its own loopback source address.
REGIONS = {"ashburn": "127.0.0.2", "helsinki": "127.0.0.3", "tokyo": "127.0.0.4"}
T = TypeVar("T")


def iot_env(**values: object) -> dict[str, str]:
    """The test's environment for an `iot` process: nothing of the caller's service settings leaks in, and
    loopback targets are allowed (the simulator, test servers, webhook receivers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIM_", "APP_", "SEED_", "REGION", "MONITOR_"))}
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
        self.proc = subprocess.Popen([*self.prefix, IOT, *self.args], env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


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


def create_tenant(tracker_url: str, slug: str, admin_token: str = ADMIN_TOKEN) -> str:
    """Create a tenant through the admin API; return its API key."""
    response = httpx.post(f"{tracker_url}/v1/tenants", json={"slug": slug},
                          headers={"Authorization": f"Bearer {admin_token}"}, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


@dataclass
class Procs:
    """The `iot` processes of one test: `common` settings for all, logs in `log_dir`, stopped newest first."""

    log_dir: Path
    common: dict[str, object] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], prefix: list[str] | None = None, **env: object) -> Proc:
        proc = Proc(name, args, iot_env(**{**self.common, **env}), self.log_dir / f"{name}.log", list(prefix or []))
        self.procs.append(proc.start())
        return proc

    def service(self, name: str, args: list[str], prefix: list[str] | None = None, timeout: float = 60.0,
                **env: object) -> str:
        """Start an HTTP service on a free port (picking again if another process took it); its URL."""
        for _attempt in range(3):
            port = free_port()
            proc = self.spawn(name, args, prefix, APP_PORT=port, **env)
            try:
                wait_http_ok(f"http://127.0.0.1:{port}/health", proc, timeout=timeout)
                return f"http://127.0.0.1:{port}"
            except AssertionError:
                if "in use" not in proc.tail(5).lower():
                    raise
                self.procs.remove(proc)
                proc.stop()
        raise AssertionError(f"{name} found no free port")

    def get(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self, lines: int = 20) -> str:
        return "\n\n".join(f"== {p.name} (exit {p.proc.poll()}) ==\n{p.tail(lines)}" for p in self.procs)


def _answering(process: Proc, url: str) -> str:
    """`url` once its /health answers; a process that does not get there is stopped, its log in the error."""
    try:
        wait_http_ok(f"{url}/health", process)
    except AssertionError:
        process.stop()
        raise RuntimeError(f"{process.name} did not start:\n{process.log()}") from None
    return url


@dataclass
class Tracker:
    url: str
    database_url: str
    redis_url: str
    admin_token: str
    process: Proc

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def create_tenant(self, slug: str) -> str:
        """Create a tenant; return its API key."""
        return create_tenant(self.url, slug, self.admin_token)


def start_tracker(database_url: str, redis_url: str, log_dir: Path, **env: str | int) -> Tracker:
    """`iot tracker` on a free port; `env` adds or overrides settings (e.g. QUOTA_DEVICES=3)."""
    port = free_port()
    process = Proc(
        "tracker", ["tracker"],
        iot_env(DATABASE_URL=database_url, REDIS_URL=redis_url, APP_PORT=port, APP_HOST="127.0.0.1",
                ADMIN_TOKEN=ADMIN_TOKEN, MONITOR_NAMES="frankfurt,tokyo", **env),
        log_dir / f"tracker-{port}.log",
    ).start()
    url = _answering(process, f"http://127.0.0.1:{port}")
    return Tracker(url, database_url, redis_url, ADMIN_TOKEN, process)


@dataclass
class Simulator:
    control_url: str
    base_port: int
    devices: int
    tcp_devices: int
    process: Proc

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
    process = Proc("simulator", args, iot_env(), log_dir / f"simulate-{control_port}.log").start()
    url = _answering(process, f"http://127.0.0.1:{control_port}")
    return Simulator(url, base_port, devices, tcp_devices, process)
