"""A monitor node's public port serves /health only; /metrics lives on a port nothing publishes.

Defence at the origin (issue 10): whatever reaches the monitor node's public :80 (Cloudflare, or
anyone's proxied zone pointed at the IP) gets the health document and nothing else. A real
`iot monitor` process on loopback, configured as the monitor nodes configure it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pulumi.runtime.sync_await import _sync_await
from servers import free_port

from cloud_init.monitor import CONTAINER_PORT, HEALTH_PORT, monitor_unit
from components.monitors import METRICS_PORT, monitor_env
from deploy.mocks import committed_stack_config

IOT = shutil.which("iot", path=str(Path(sys.executable).parent)) or "iot"


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return None


def test_the_public_listener_serves_health_only_and_metrics_has_its_own_port(redis_url: str, tmp_path: Path):
    public, metrics = free_port(), free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "REGION": "frankfurt", "APP_HOST": "127.0.0.1",
           "APP_PORT": str(public), "METRICS_PORT": str(metrics)}
    with (tmp_path / "monitor.log").open("wb") as log:
        proc = subprocess.Popen([IOT, "monitor"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while _status(f"http://127.0.0.1:{public}/health") != 200 or _status(f"http://127.0.0.1:{metrics}/metrics") != 200:
                assert proc.poll() is None, (tmp_path / "monitor.log").read_text()
                assert time.monotonic() < deadline, "monitor did not start both listeners"
                time.sleep(0.05)
            assert httpx.get(f"http://127.0.0.1:{public}/health").json()["region"] == "frankfurt"
            assert httpx.get(f"http://127.0.0.1:{public}/metrics").status_code == 404
            text = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
            assert "iot_monitor_batches_total" in text
            assert httpx.get(f"http://127.0.0.1:{metrics}/health").status_code == 404
        finally:
            proc.terminate()
            assert proc.wait(20) == 0
    assert "monitor started" in (tmp_path / "monitor.log").read_text()


def test_monitor_nodes_move_metrics_off_the_published_port():
    config = committed_stack_config("prod")
    text = _sync_await(monitor_env(config, config.monitors[0]).future())
    values = dict(line.split("=", 1) for line in text.splitlines())
    assert values["APP_PORT"] == str(CONTAINER_PORT)
    assert values["METRICS_PORT"] == str(METRICS_PORT) != str(CONTAINER_PORT)
    unit = monitor_unit()
    assert f"--publish {HEALTH_PORT}:{CONTAINER_PORT}" in unit
    assert str(METRICS_PORT) not in unit, "the metrics port is never published on the node"
