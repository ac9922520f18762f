"""`iot demo` (or `make demo`): the whole system from source on this machine, without Docker.

Redis and PostgreSQL from the OS packages on free ports in one temp dir (as the tests start them), then
`iot migrate`, the device simulator, the tracker, the worker, two monitors probing from two loopback
source addresses (two "regions" on one machine), `iot seed` (tenant `demo`), the dashboard and the static
marketing site. It prints the dashboard URL and the demo key, and runs until Ctrl-C.

Ctrl-C, SIGTERM, a closed terminal, a child that dies or a start-up that fails half way all end the
same way: every child is stopped (newest first), PostgreSQL and Redis last, and the temp dir is removed,
so no process, port or file is left behind. Every process it starts carries IOT_DEMO_DIR=<its temp dir>
in its environment, which is how a leftover would be found.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

import iot
from iot.devtools.children import Children, StartError, wait_http
from iot.devtools.servers import PostgresServer, RedisServer, free_port, free_port_range
from iot.settings import ALL_SETTINGS

# Every setting the demo gives its services, in one place. Ports, URLs and the secrets (fresh random
# values each run, so nothing published is needed: no ALLOW_DEFAULT_SECRETS) are added at start-up.
DEMO_ENVIRONMENT: dict[str, str] = {
    "DOMAIN": "localhost",  # tenants at http://<slug>.localhost:<port>/: browsers resolve *.localhost themselves
    "APP_HOST": "127.0.0.1",  # nothing listens beyond this machine
    "MONITOR_NAMES": "frankfurt,amsterdam",
    "LOG_LEVEL": "info",
    "HEARTBEAT_SECONDS": "2",
    "REGION_ALIVE_SECONDS": "8",
    "CONCURRENCY": "200",  # checks in flight per monitor: plenty for a few hundred devices
    "DEMO_TENANT": "demo",
    # The devices are simulated on 127.0.0.1: the seed registers loopback targets and the monitors probe them.
    "SEED_SIMULATOR_HOST": "127.0.0.1",
    # ...which the egress policy refuses unless allow-listed: exactly the loopback range, nothing else.
    "EGRESS_ALLOW_CIDRS": "127.0.0.0/8",
}
# One "region" per monitor, each probing from its own loopback source address.
REGIONS: dict[str, str] = {"frankfurt": "127.0.0.2", "amsterdam": "127.0.0.3"}
MARKETING_SITE = Path(iot.__file__).resolve().parents[1] / "marketing" / "site"  # present in a source checkout
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PORT_RETRIES = 3  # another program may take a free port between our pick and the child's bind


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: stop everything."""


@dataclass
class Demo:
    root: Path
    children: Children
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    urls: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def iot(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "iot", *args]


def say(text: str) -> None:
    with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP): stopping must go on regardless
        print(text, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="iot demo",
        description="Run the whole system from source on this machine, without Docker: Redis and PostgreSQL "
        "from the OS packages (redis-server, postgresql) on free ports in a temp dir, migrate, the simulator, "
        "tracker, worker, two monitors on 127.0.0.2 and 127.0.0.3, the seed and the dashboard. Prints the "
        "dashboard URL and the demo key; Ctrl-C stops everything and removes the temp dir.",
    )
    parser.add_argument("--devices", type=int, default=100, help="simulated HTTP devices (default 100)")
    parser.add_argument("--tcp-devices", type=int, default=10, help="simulated TCP devices (default 10)")
    parser.add_argument("--failing", type=int, default=5,
                        help="extra devices at closed ports, which go down (default 5)")
    parser.add_argument("--interval", type=int, default=10, help="check interval of the devices in s (default 10)")
    parser.add_argument("--port", type=int, default=0, help="dashboard port (default: a free one)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="keep the services' logs in this directory (default: in the temp dir, removed at exit)")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.tcp_devices < 0 or args.failing < 0:
        parser.error("--devices must be >= 1, --tcp-devices and --failing >= 0")
    if not 5 <= args.interval <= 3600:
        parser.error("--interval must be between 5 and 3600 seconds")
    return args


def child_environment() -> dict[str, str]:
    """This process's environment without any setting the services read (a DATABASE_URL exported in the
    shell must not send the demo elsewhere), plus DEMO_ENVIRONMENT."""
    read = {(cls.model_config.get("env_prefix", "") + name).upper() for cls in ALL_SETTINGS
            for name in cls.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in read}
    return {**env, **DEMO_ENVIRONMENT}


def start_http(demo: Demo, name: str, command: list[str] | Callable[[int], list[str]], port: int = 0,
               health: str = "/health", **env: str | int) -> str:
    """Start a server on APP_PORT (or on the port `command(port)` names) and wait for it to answer;
    pick another port if the first one was taken meanwhile."""
    for attempt in range(PORT_RETRIES):
        chosen = port or free_port()
        argv = command(chosen) if callable(command) else command
        child = demo.children.start(name, argv, APP_PORT=chosen, **env)
        url = f"http://127.0.0.1:{chosen}"
        try:
            wait_http(child, url + health, timeout=90)
            return url
        except StartError:
            taken = "in use" in child.tail(5).lower()
            if port or not taken or attempt == PORT_RETRIES - 1:
                raise
            demo.children.forget(child)
            child.stop()
    raise AssertionError("unreachable")


def start(demo: Demo, args: argparse.Namespace) -> None:
    say(f"starting Redis and PostgreSQL in {demo.root} ...")
    demo.redis = RedisServer(parent=demo.root, own_session=True)
    demo.redis.start()
    demo.postgres = PostgresServer(parent=demo.root)
    demo.postgres.start()
    database_url = demo.postgres.create_database("iot")
    redis_url = demo.redis.url
    demo.urls |= {"postgres": database_url, "redis": redis_url}
    demo.children.env |= {"DATABASE_URL": database_url, "REDIS_URL": redis_url}

    say("migrating the database ...")
    demo.children.run("migrate", demo.iot("migrate"), timeout=120)

    say("starting the simulator, tracker, worker and monitors ...")
    sim_devices = args.devices + args.tcp_devices
    base_port = free_port_range(sim_devices + args.failing)  # the failing devices' ports stay closed
    control_port = free_port()
    simulator = demo.children.start("simulator", demo.iot(
        "simulate", "--devices", str(args.devices), "--tcp-devices", str(args.tcp_devices),
        "--base-port", str(base_port), "--control-port", str(control_port)))
    wait_http(simulator, f"http://127.0.0.1:{control_port}/health")
    demo.urls["simulator"] = f"http://127.0.0.1:{control_port}"
    demo.urls["devices"] = f"127.0.0.1:{base_port}-{base_port + sim_devices + args.failing - 1}"
    demo.urls["tracker"] = start_http(demo, "tracker", demo.iot("tracker"), ADMIN_TOKEN=demo.secrets["admin_token"])
    demo.urls["worker"] = start_http(demo, "worker", demo.iot("worker"))
    for region, source in REGIONS.items():
        demo.urls[f"monitor {region}"] = start_http(demo, f"monitor-{region}", demo.iot("monitor"), REGION=region,
                                                    MONITOR_SOURCE_ADDRESS=source)

    say("seeding the demo tenant ...")
    demo.children.run(
        "seed", demo.iot("seed"), timeout=120, DEMO_API_KEY=demo.secrets["demo_key"],
        SEED_DEVICES=args.devices, SEED_TCP_DEVICES=args.tcp_devices, SEED_FAILING=args.failing,
        SEED_INTERVAL_S=args.interval, SEED_SIMULATOR_BASE_PORT=base_port)

    say("starting the dashboard ...")
    if MARKETING_SITE.is_dir():
        demo.urls["marketing"] = start_http(
            demo, "marketing", lambda port: [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                             "--directory", str(MARKETING_SITE), str(port)], health="/")
    marketing_url = demo.urls.get("marketing", "").replace("127.0.0.1", "localhost")
    demo.urls["dashboard"] = start_http(
        demo, "dashboard", demo.iot("dashboard"), port=args.port, SESSION_SECRET=demo.secrets["session_secret"],
        TRACKER_PUBLIC_URL=demo.urls["tracker"], MARKETING_URL=marketing_url + "/" if marketing_url else "")


def banner(demo: Demo) -> str:
    dashboard_port = demo.urls["dashboard"].rsplit(":", 1)[1]
    tenant = DEMO_ENVIRONMENT["DEMO_TENANT"]
    lines = [
        "",
        "my-iot-app demo is running. Ctrl-C stops everything.",
        "",
        f"  dashboard   http://{tenant}.localhost:{dashboard_port}/",
        f"  demo key    {demo.secrets['demo_key']}",
        "",
        f"  tracker     {demo.urls['tracker']}  (API docs: /docs; admin token {demo.secrets['admin_token']})",
        f"  worker      {demo.urls['worker']}/status",
    ]
    lines += [f"  monitor     {url}/health  ({name.split()[1]}, probes from {REGIONS[name.split()[1]]})"
              for name, url in demo.urls.items() if name.startswith("monitor ")]
    lines += [
        f"  simulator   {demo.urls['simulator']}  (control API; devices on {demo.urls['devices']})",
        f"  postgres    {demo.urls['postgres']}",
        f"  redis       {demo.urls['redis']}",
    ]
    if "marketing" in demo.urls:
        lines.append(f"  marketing   {demo.urls['marketing'].replace('127.0.0.1', 'localhost')}/")
    lines += [f"  logs        {demo.children.log_dir}", f"  temp dir    {demo.root}", ""]
    return "\n".join(lines)


def watch(demo: Demo) -> int:
    """Wait for a signal (Interrupted) or a child's death; return the exit status."""
    while True:
        dead = demo.children.first_dead()
        if dead is not None:
            say(f"\n{dead.name} exited with {dead.exit_code()}; stopping the demo. The end of its log:\n{dead.tail()}")
            return 1
        time.sleep(0.5)


def stop(demo: Demo) -> None:
    """Stop every child, then PostgreSQL and Redis, then remove the temp dir; signals wait meanwhile."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    say("stopping ...")
    steps = [("the services", demo.children.stop_all)]
    steps += [("PostgreSQL", demo.postgres.cleanup)] if demo.postgres is not None else []
    steps += [("Redis", demo.redis.cleanup)] if demo.redis is not None else []
    steps += [("the temp dir", lambda: shutil.rmtree(demo.root))]
    failed = []
    for what, step in steps:  # each step runs even when one before it failed
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - reported, and the remaining steps still run
            failed.append(what)
            say(f"could not stop {what}: {exc}")
    if failed:
        say(f"stopped, except {', '.join(failed)}: look for processes with IOT_DEMO_DIR={demo.root}")
    else:
        say("stopped: no demo process, port or temp dir is left.")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupt) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with stop_on_signals():
        root = Path(tempfile.mkdtemp(prefix="iot-demo-"))
        # As root, PostgreSQL runs as `postgres`, which must reach its own directory inside this one.
        root.chmod(0o711)
        os.environ["IOT_DEMO_DIR"] = str(root)  # inherited by every process below: how leftovers are found
        log_dir = args.logs.resolve() if args.logs else root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        # Every service gets the same fresh key for stored secrets (the published defaults are refused).
        environment = {**child_environment(), "SECRETS_KEY": Fernet.generate_key().decode()}
        demo = Demo(root, Children(log_dir, environment), secrets={
            "demo_key": f"iotk_demo-{secrets.token_urlsafe(18)}",
            "admin_token": secrets.token_urlsafe(24),
            "session_secret": secrets.token_urlsafe(32),
        })
        try:
            start(demo, args)
            say(banner(demo))
            return watch(demo)
        except Interrupted:
            return 0
        except (StartError, RuntimeError, OSError) as exc:
            say(f"\nthe demo could not start: {exc}")
            return 1
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip() if isinstance(exc.stderr, bytes) else exc.stderr
            say(f"\nthe demo could not start: {' '.join(map(str, exc.cmd))} failed (exit {exc.returncode}): {detail}")
            return 1
        finally:
            stop(demo)
