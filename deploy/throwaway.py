"""Write the stack file of a throwaway end-to-end stack (e2e-cloud.yml): dev-sized, in its own zone.

    python -m deploy.throwaway --stack e2e-1234-1 --domain e2e.example.net --zone-id <32 hex> \\
        --account-id <32 hex> [--from dev]

Copies the plain settings of the committed `Pulumi.<from>.yaml` (never its `secure:` values: the
workflow passes secrets with --secret-env), points domain and Cloudflare ids at the e2e zone, and
validates the result the way the program will, including the collision check against every
committed stack, before any cloud call. It never overwrites an existing stack file.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.config import ConfigError, parse_stack_config
from components.stack_collisions import committed_stacks

REPO_DIR = Path(__file__).resolve().parent.parent
_STACK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{2,40}$")
PROTECTED_STACKS = ("dev", "prod")


def throwaway_config(base: Mapping[str, Any], domain: str, zone_id: str, account_id: str) -> dict[str, Any]:
    """The base stack's plain config with the e2e zone; `secure:` values are left out."""
    config = {k: v for k, v in (base.get("config") or {}).items()
              if not (isinstance(v, Mapping) and set(v) == {"secure"})}
    config["iot:domain"] = domain
    config["iot:cloudflare"] = {"accountId": account_id, "zoneId": zone_id, "ownsZone": True}
    config["iot:protect"] = False  # `destroy` must be able to remove every resource
    return {"config": config}


def write_throwaway(work_dir: Path, stack: str, base_stack: str, domain: str, zone_id: str, account_id: str) -> Path:
    if not _STACK_NAME.match(stack) or stack in PROTECTED_STACKS:
        raise ConfigError(f"--stack {stack!r} is not a throwaway name; use e.g. e2e-<run id>-<attempt>")
    target = work_dir / f"Pulumi.{stack}.yaml"
    if target.exists():
        raise ConfigError(f"{target.name} already exists; a throwaway stack needs a new, unique name")
    base = yaml.safe_load((work_dir / f"Pulumi.{base_stack}.yaml").read_text()) or {}
    document = throwaway_config(base, domain, zone_id, account_id)
    raw = {k.split(":", 1)[1]: v for k, v in document["config"].items() if k.startswith("iot:")}
    placeholders = {"databaseUrl": "postgresql://placeholder", "redisUrl": "redis://placeholder"}
    parse_stack_config(raw, stack, placeholders, other_stacks=committed_stacks(work_dir, exclude=stack))
    header = f"# Throwaway end-to-end stack {stack} (from Pulumi.{base_stack}.yaml): destroyed by e2e-cloud.yml.\n"
    target.write_text(header + yaml.safe_dump(document, sort_keys=False))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.throwaway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--from", dest="base", default="dev", help="committed stack to copy (default dev)")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--zone-id", required=True)
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--work-dir", type=Path, default=REPO_DIR)
    args = parser.parse_args(argv)
    try:
        path = write_throwaway(args.work_dir, args.stack, args.base, args.domain, args.zone_id, args.account_id)
    except (ConfigError, OSError) as exc:
        print(f"error: throwaway stack {args.stack}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path.name}: stack {args.stack} in its own zone, {args.domain}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
