"""Processes of the side-by-side benchmark: nginx targets, blackbox_exporter, fping, an `iot monitor`.

Everything listens on loopback ports picked free at start. CPU is read from /proc (user + system time of
the process), so each tool is charged for its own work only: not for nginx, not for the bench's driver.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from servers import free_port, wait_port  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process."""
    return sum(user_system_seconds(pid))


def need(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if path is None:
        sys.exit(f"{binary} not found: apt-get install {package} (see .ci/run)")
    return path


def _wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def nginx(ports: int) -> Iterator[list[int]]:
    """nginx-light answering `200 ok` on `ports` loopback ports (new connection per request is fine)."""
    binary = need("nginx", "nginx-light")
    chosen = [free_port() for _ in range(ports)]
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as prefix:
        listens = "\n".join(f"listen 127.0.0.1:{p} backlog=4096;" for p in chosen)
        temp = "\n".join(f"{name}_temp_path {prefix}/{name};" for name in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = Path(prefix, "nginx.conf")
        conf.write_text(f"""
worker_processes 1; daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; multi_accept on; }}
http {{
  access_log off; {temp}
  server {{ {listens} location / {{ return 200 "ok\\n"; }} }}
}}
""")
        proc = subprocess.Popen([binary, "-p", prefix, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            for port in chosen:
                wait_port(port)
            yield chosen
        finally:
            _stop(proc)


@contextlib.contextmanager
def blackbox_exporter(timeout_s: float) -> Iterator[tuple[str, int]]:
    """blackbox_exporter with `http_2xx` and `tcp_connect` modules; yields (base URL, pid)."""
    binary = need("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-blackbox-") as tmp:
        config = Path(tmp, "blackbox.yml")
        config.write_text(
            "modules:\n"
            f"  http_2xx: {{prober: http, timeout: {timeout_s:g}s, http: {{preferred_ip_protocol: ip4}}}}\n"
            f"  tcp_connect: {{prober: tcp, timeout: {timeout_s:g}s, tcp: {{preferred_ip_protocol: ip4}}}}\n"
        )
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--log.level=error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_http(f"http://127.0.0.1:{port}/", proc, "blackbox_exporter")
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            _stop(proc)


@contextlib.contextmanager
def iot_monitor(redis_url: str, region: str, env: dict[str, str]) -> Iterator[int]:
    """`iot monitor` for `region`; yields its pid once /health answers. Killed (SIGKILL) on exit: a run
    with 60 s timeouts must not wait for its dead checks, and the next run gets a fresh process."""
    port = free_port()
    full_env = {**os.environ, "REDIS_URL": redis_url, "REGION": region, "APP_PORT": str(port),
                "APP_HOST": "127.0.0.1", "LOG_LEVEL": "warning", "INSTANCE_ID": f"bench-{port}",
                # the targets are loopback addresses, which the egress policy refuses by default (issue 12)
                "EGRESS_ALLOW_CIDRS": "127.0.0.0/8", **env}
    iot = shutil.which("iot", path=str(Path(sys.executable).parent)) or "iot"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([iot, "monitor"], env=full_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_http(f"http://127.0.0.1:{port}/health", proc, "iot monitor")
            yield proc.pid
        except RuntimeError:
            log.seek(0)
            print(log.read().decode(errors="replace")[-2000:], file=sys.stderr)
            raise
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


def run_fping(targets: list[str], timeout_ms: int, processes: int) -> tuple[int, float, float]:
    """Ping every target once with `processes` fping processes in parallel (targets split evenly):
    (replies, wall seconds until the last one exits, CPU seconds of all of them)."""
    binary = need("fping", "fping")
    shares = [targets[i::processes] for i in range(processes)]
    started = time.perf_counter()
    procs = []
    for share in shares:
        if share:
            procs.append(subprocess.Popen(
                [binary, "-c", "1", "-r", "0", "-i", "0", "-t", str(timeout_ms), "-q", *share],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    replies, cpu = 0, 0.0
    for proc in procs:
        stderr = proc.stderr.read() if proc.stderr else ""
        _pid, _status, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        cpu += usage.ru_utime + usage.ru_stime
        replies += sum(1 for line in stderr.splitlines() if "xmt/rcv/%loss = 1/1/" in line)
    return replies, time.perf_counter() - started, cpu
