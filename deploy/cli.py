"""Command line of `python -m deploy`: parse arguments, run, return the exit code."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from deploy.automation import COMMANDS, EXIT_FAILED, Options, run

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_POLICY_PACK = REPO_DIR / "policy"
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on bad usage, which would read as "changes"; a usage error is a failure (1).
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_FAILED, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m deploy",
        description="Preview or deploy a stack through the Pulumi Automation API, with guardrails. "
        "Exit codes: 0 no changes, 2 changes (previewed or applied), 3 refused by a guardrail "
        "or a mandatory policy, 1 failed. `python -m deploy window open|close --stack S` admits the CI runner "
        "to SSH and the Nomad API for one job (see --help there).",
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--stack", required=True, help="stack name, e.g. dev, prod or org/prod")
    parser.add_argument(
        "--allow-replace",
        action="store_true",
        help="let `up` delete or replace protected resources (servers, networks, DNS, load balancers...)",
    )
    parser.add_argument("--yes-destroy-prod", action="store_true", help="required to destroy the prod stack")
    parser.add_argument(
        "--policy-pack",
        action="append",
        default=None,
        metavar="DIR",
        help=f"CrossGuard policy pack run with preview/up (repeatable; default: {DEFAULT_POLICY_PACK.name}/)",
    )
    parser.add_argument("--no-policy-pack", action="store_true", help="run preview/up without a policy pack")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a plain stack config value first; a dotted key is a path into an object, e.g. "
        "iot:images.app=ghcr.io/<owner>/iot@sha256:<digest> (repeatable)",
    )
    parser.add_argument(
        "--images-from-stack",
        action="store_true",
        help="keep the images the stack last deployed (its `images` output) for those not given with --config: "
        "pull-request previews show infrastructure changes without a release",
    )
    parser.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="KEY=ENV_VAR",
        help="set secret config KEY from environment variable ENV_VAR first (skipped when the variable is "
        "empty and the stack file holds a real value), e.g. hcloud:token=HCLOUD_TOKEN (repeatable)",
    )
    parser.add_argument("--summary-file", help="also write the Markdown summary to this file (PR comments)")
    parser.add_argument("--work-dir", type=Path, default=REPO_DIR, help="Pulumi project directory")
    return parser


def parse_options(argv: list[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    config: dict[str, str] = {}
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep or ":" not in key:
            parser.error(f"--config {item!r} must look like namespace:key=value, e.g. iot:imageTag=abc123")
        config[key] = value
    secret_env: dict[str, str] = {}
    for item in args.secret_env:
        key, sep, variable = item.partition("=")
        if not sep or ":" not in key or not _ENV_NAME.match(variable):
            # Never echo the item: someone may have passed the secret itself instead of a variable name.
            parser.error("--secret-env takes namespace:key=ENV_VAR_NAME, e.g. hcloud:token=HCLOUD_TOKEN")
        secret_env[key] = variable
    if args.no_policy_pack:
        packs: list[str] = []
    else:
        packs = [str(Path(p).resolve()) for p in (args.policy_pack or [DEFAULT_POLICY_PACK])]
        for pack in packs:
            if not (Path(pack) / "PulumiPolicy.yaml").is_file():
                parser.error(f"--policy-pack {pack} has no PulumiPolicy.yaml; pass a policy pack directory")
    return Options(
        command=args.command,
        stack=args.stack,
        work_dir=args.work_dir.resolve(),
        allow_replace=args.allow_replace,
        yes_destroy_prod=args.yes_destroy_prod,
        policy_packs=packs,
        config=config,
        secret_env=secret_env,
        summary_file=args.summary_file,
        images_from_stack=args.images_from_stack,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["window"]:  # `python -m deploy window open|close`: see deploy/window.py
        from deploy import window

        return window.main(argv[1:])
    return run(parse_options(argv))
