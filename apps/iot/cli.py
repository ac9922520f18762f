"""The `iot` console command: one entry point per service, all in one image."""

import argparse
import importlib
import sys

# subcommand -> (module, function, help). Modules are imported lazily so each service only
# loads what it needs.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "migrate": ("iot.db.migrate", "main", "apply database migrations (idempotent, safe to run concurrently)"),
    "tracker": ("iot.tracker.main", "main", "run the tracker HTTP API"),
    "worker": ("iot.worker.main", "main", "run the scheduler/evaluator worker"),
    "monitor": ("iot.monitor.main", "main", "run a regional monitor (REGION=<name>)"),
    "simulate": ("iot.simulator.main", "main", "serve simulated devices on loopback"),
    "dashboard": ("iot.dashboard.main", "main", "run the tenant dashboard"),
    "seed": ("iot.dashboard.seed", "main", "create the playground's demo tenant and devices (idempotent)"),
    "env": ("iot.cli", "print_env", "print every environment variable the services read"),
}


def print_env(argv: list[str]) -> int:
    from iot.settings import describe_environment

    print(describe_environment())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="iot", description="my-iot-app services")
    parser.add_argument("command", choices=sorted(COMMANDS), help="service to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the service")
    ns = parser.parse_args(argv[:1])
    module_name, func_name, _ = COMMANDS[ns.command]
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
