"""The product's pipeline as real processes for the browser test: simulator, two monitors, worker, dashboard."""

from __future__ import annotations

from dataclasses import dataclass

from iot_processes import Procs, wait_http_ok
from servers import free_port, free_port_range


@dataclass(frozen=True)
class Pipeline:
    dashboard_port: int
    simulator_control: str
    simulator_base_port: int
    procs: Procs


def start_pipeline(procs: Procs, database_url: str, redis_url: str, devices: int) -> Pipeline:
    procs.common.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "APP_HOST": "127.0.0.1",
                         "MONITOR_NAMES": "frankfurt,amsterdam", "DOMAIN": "localhost", "LOG_LEVEL": "info"})
    control_port, base_port = free_port(), free_port_range(devices + 4)
    simulator = procs.spawn("simulator", ["simulate", "--devices", str(devices), "--base-port", str(base_port),
                                          "--control-port", str(control_port)])
    wait_http_ok(f"http://127.0.0.1:{control_port}/health", simulator)
    for region in ("frankfurt", "amsterdam"):
        procs.service(region, ["monitor"], REGION=region, HEARTBEAT_SECONDS=1)
    procs.service("worker", ["worker"], REGION_ALIVE_SECONDS=5)
    dashboard = procs.service("dashboard", ["dashboard"], SESSION_SECRET="browser-test-session-secret-0123456789")
    return Pipeline(int(dashboard.rsplit(":", 1)[1]), f"http://127.0.0.1:{control_port}", base_port, procs)
