"""The `iot` console command: one entry point per service, all in one image."""

import argparse
import importlib
import sys

# subcommand -> (module, function, one-line description). Modules are imported lazily so each service
# only loads what it needs, and `iot <command> --help` is answered before anything connects anywhere.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("iot.devtools.demo", "main", "run the whole system from source on this machine (no Docker)"),
    "tracker": ("iot.tracker.main", "main", "run the tracker HTTP API (devices, tenants, metrics in)"),
    "worker": ("iot.worker.main", "main", "run the scheduler/evaluator worker"),
    "monitor": ("iot.monitor.main", "main", "run a regional monitor (REGION=<name>)"),
    "dashboard": ("iot.dashboard.main", "main", "run the tenant dashboard"),
    "migrate": ("iot.db.migrate", "main", "apply database migrations (idempotent, safe to run concurrently)"),
    "seed": ("iot.dashboard.seed", "main", "create or update the demo tenant and its devices (converges)"),
    "simulate": ("iot.simulator.main", "main", "serve simulated devices on loopback"),
    "env": ("iot.cli", "print_env", "print every environment variable the services read, marking defaults"),
}


def print_env(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="iot env",
        description="Print every environment variable the services read, with the value a service started "
        "here would get: `default` when it is not set (the built-in value applies), `set` otherwise. "
        "Passwords and secrets are hidden.",
    ).parse_args(argv)
    from iot.settings import describe_environment

    print(describe_environment())
    return 0


def parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in COMMANDS)
    listing = "\n".join(f"  {name:<{width}}  {description}" for name, (_, _, description) in COMMANDS.items())
    result = argparse.ArgumentParser(
        prog="iot", usage="iot <command> [options]", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="my-iot-app: every service and tool, configured by environment variables (`iot env`).",
        epilog=f"commands:\n{listing}\n\nRun `iot <command> --help` for a command's description and options.",
    )
    result.add_argument("command", choices=list(COMMANDS), metavar="command", help="one of the commands below")
    result.add_argument("args", nargs=argparse.REMAINDER, help="options of the command")
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser().print_help()
        return 2
    ns = parser().parse_args(argv[:1])
    module_name, func_name, _ = COMMANDS[ns.command]
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
