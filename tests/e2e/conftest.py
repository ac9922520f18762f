"""The whole pipeline as real processes: migrate, tracker, simulator, three monitors, a worker.

Each monitor is its own "region" with its own loopback source address, so the simulator can tell
(and cut off) regions apart. Logs go to the test's tmp dir; the tail of each is printed on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from iot_processes import (
    ADMIN_TOKEN,
    REGIONS,
    Proc,
    iot_env,
    run_iot,
    wait_http_ok,
)
from servers import free_port, free_port_range


@dataclass
class Pipeline:
    tracker_url: str
    worker_url: str
    simulator_url: str
    sim_base_port: int
    monitor_urls: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)  # every HTTP service by name, extras included
    database_url: str = ""

    def proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def tracker(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.tracker_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def simulator(self) -> httpx.Client:
        return httpx.Client(base_url=self.simulator_url, timeout=30)

    def logs(self) -> str:
        return "\n\n".join(f"== {p.name} (exit {p.proc.poll()}) ==\n{p.tail(20)}" for p in self.procs)


@pytest.fixture
def pipeline_factory(postgres_server, redis_server, tmp_path: Path, request) -> Iterator:
    started: list[Pipeline] = []

    def start(devices: int, *, worker_env: dict[str, object] | None = None,
              monitor_env: dict[str, object] | None = None, redis_url: str | None = None,
              extra_services: dict[str, tuple[list[str], dict[str, object]]] | None = None) -> Pipeline:
        """`redis_url`: a test's own Redis (e.g. one it restarts); default the session server.
        `extra_services`: more HTTP services by name, e.g. a second monitor of a region or a standby worker."""
        redis_url = redis_url or redis_server.url
        database_url = postgres_server.create_database(f"e2e_{tmp_path.name[:40]}".replace("-", "_"))
        common = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "APP_HOST": "127.0.0.1",
                  "LOG_LEVEL": "info", "MONITOR_NAMES": ",".join(REGIONS)}
        # flush Redis: streams and locks of an earlier test must not leak in
        import redis

        client = redis.Redis.from_url(redis_url)
        client.flushall()
        client.close()
        run_iot(["migrate"], iot_env(**common))
        procs: list[Proc] = []

        def spawn(name: str, args: list[str], **env: object) -> Proc:
            proc = Proc(name, args, iot_env(**common, **env), tmp_path / f"{name}.log").start()
            procs.append(proc)
            return proc

        # name -> (args, env) of the HTTP services; their APP_PORT is picked (and re-picked) below
        services: dict[str, tuple[list[str], dict[str, object]]] = {
            "tracker": (["tracker"], {"ADMIN_TOKEN": ADMIN_TOKEN}),
            **{f"monitor-{region}": (["monitor"], {
                "REGION": region, "MONITOR_SOURCE_ADDRESS": source, "HEARTBEAT_SECONDS": 2, "CONCURRENCY": 300,
                "RECLAIM_IDLE_SECONDS": 10, **(monitor_env or {})}) for region, source in REGIONS.items()},
            "worker": (["worker"], {"LOCK_TTL_SECONDS": 5, "REGION_ALIVE_SECONDS": 8, **(worker_env or {})}),
            **(extra_services or {}),
        }
        ports = {name: free_port() for name in services}
        running = {name: spawn(name, args, APP_PORT=ports[name], **env) for name, (args, env) in services.items()}
        control_port = free_port()
        base_port = free_port_range(devices)
        simulator = spawn("simulator", ["simulate", "--devices", str(devices), "--base-port", str(base_port),
                                        "--control-port", str(control_port)])
        pipeline = Pipeline(f"http://127.0.0.1:{ports['tracker']}", f"http://127.0.0.1:{ports['worker']}",
                            f"http://127.0.0.1:{control_port}", base_port, {}, procs)
        started.append(pipeline)
        wait_http_ok(f"{pipeline.simulator_url}/health", simulator, timeout=60)
        for name, (args, env) in services.items():
            for _attempt in range(3):
                try:
                    wait_http_ok(f"http://127.0.0.1:{ports[name]}/health", running[name])
                    break
                except AssertionError:
                    # Another process on this shared machine took the free port we picked: pick again.
                    if "in use" not in running[name].tail(5).lower():
                        raise
                    procs.remove(running[name])
                    running[name].stop()
                    ports[name] = free_port()
                    running[name] = spawn(name, args, APP_PORT=ports[name], **env)
            else:
                raise AssertionError(f"{name} found no free port")
        pipeline.tracker_url = f"http://127.0.0.1:{ports['tracker']}"
        pipeline.worker_url = f"http://127.0.0.1:{ports['worker']}"
        pipeline.monitor_urls = {region: f"http://127.0.0.1:{ports[f'monitor-{region}']}" for region in REGIONS}
        pipeline.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        pipeline.database_url = database_url
        return pipeline

    yield start
    failed = getattr(request.node, "rep_call", None)
    for pipeline in started:
        if failed is not None and failed.failed:
            print(pipeline.logs())
        for proc in reversed(pipeline.procs):
            proc.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
