"""Run preview/up/refresh/destroy/outputs on a stack through the Pulumi Automation API, with guardrails.

Exit codes (also in docs/operator-manual.md):
  0  nothing to change (preview/up/refresh/destroy) or outputs printed
  2  changes: previewed (preview) or applied (up, refresh, destroy)
  3  refused: a guardrail (protected resource deleted/replaced without --allow-replace, destroy of prod
     without --yes-destroy-prod) or a mandatory policy violation
  1  failed: missing CLI/credentials/secret, bad usage, or the engine reported an error
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from pulumi.automation import ConfigValue, EngineEvent
from pulumi.automation.errors import CommandError, InvalidVersionError

from deploy import diagnose, guardrails, release, summary

EXIT_NO_CHANGES = 0
EXIT_FAILED = 1
EXIT_CHANGES = 2
EXIT_REFUSED = 3

COMMANDS = ("preview", "up", "refresh", "destroy", "outputs")


class StackLike(Protocol):
    """The part of ``pulumi.automation.Stack`` this module uses (tests replay recorded events through it)."""

    def preview(self, **kwargs: Any) -> Any: ...
    def up(self, **kwargs: Any) -> Any: ...
    def refresh(self, **kwargs: Any) -> Any: ...
    def destroy(self, **kwargs: Any) -> Any: ...
    def outputs(self) -> Mapping[str, Any]: ...
    def set_config(self, key: str, value: ConfigValue, path: bool = False) -> None: ...


StackOpener = Callable[[str, Path], StackLike]


@dataclass
class Options:
    command: str
    stack: str
    work_dir: Path
    allow_replace: bool = False
    yes_destroy_prod: bool = False
    policy_packs: list[str] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)
    # Secret config keys to set from environment variables (key -> variable), e.g. CI secrets.
    secret_env: dict[str, str] = field(default_factory=dict)
    summary_file: str | None = None
    # preview: keep the images the stack last deployed (its `images` output) unless --config names others.
    images_from_stack: bool = False

    @property
    def stack_short_name(self) -> str:
        # "org/project/dev" and "org/dev" keep their settings in Pulumi.dev.yaml.
        return self.stack.rsplit("/", 1)[-1]


def select_local_stack(stack: str, work_dir: Path) -> StackLike:
    """The real thing: a LocalWorkspace over the project directory, stack selected (never created)."""
    from pulumi import automation as auto

    return auto.select_stack(stack_name=stack, work_dir=str(work_dir))


def run(
    options: Options,
    open_stack: StackOpener = select_local_stack,
    env: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> int:
    env = os.environ if env is None else env
    report = summary.Report(command=options.command, stack=options.stack, outcome="failed", exit_code=EXIT_FAILED)
    try:
        _run(options, open_stack, env, which, report)
    finally:
        summary.publish(summary.render(report), env=env, extra_file=options.summary_file)
    return report.exit_code


def _run(options: Options, open_stack: StackOpener, env: Mapping[str, str], which, report: summary.Report) -> None:
    if options.command == "destroy":
        decision = guardrails.decide_destroy(options.stack_short_name, options.yes_destroy_prod)
        if not decision.allowed:
            _refuse(report, decision.message)
            return
    # Check for the CLI before touching the automation API: its first call would fail obscurely.
    if which("pulumi") is None:
        _fail(report, diagnose.CLI_MISSING)
        return
    files = load_stack_files(options.work_dir, options.stack_short_name)
    secrets = {key: env[var] for key, var in options.secret_env.items() if env.get(var)}
    provided = frozenset(options.config) | frozenset(secrets)
    problems = diagnose.secret_env_problems(options.secret_env, files, env)
    problems += diagnose.preflight_problems(options.command, files, env, _logged_in(env), provided)
    if problems:
        for problem in problems:
            _fail(report, problem)
        return
    events: list[EngineEvent] = []
    try:
        stack = open_stack(options.stack, options.work_dir)
        config = dict(options.config)
        if options.images_from_stack:
            try:
                config = {**release.deployed_image_config(_plain_outputs(stack)), **config}
            except LookupError as error:
                _fail(report, f"--images-from-stack: {error}")
                return
        for key, value in config.items():
            # `iot:images.app` is a path into the iot:images object (`pulumi config set --path`).
            stack.set_config(key, ConfigValue(value=value), path=_is_path(key))
        for key, value in secrets.items():
            stack.set_config(key, ConfigValue(value=value, secret=True))
        _COMMAND_RUNNERS[options.command](stack, options, events, report)
    except InvalidVersionError as error:
        _fail(report, f"the installed pulumi CLI is too old for this SDK ({error}): install the version pinned in "
              "requirements.txt (pulumi/actions `pulumi-version`, or `curl -fsSL https://get.pulumi.com | sh -s -- "
              "--version <version>`)")
    except CommandError as error:
        _record_events(report, events)
        if guardrails.mandatory_violations(report.violations):
            _refuse(report, "refused by the policy pack: fix the mandatory policy violations listed below")
            return
        explanation = diagnose.explain_failure(str(error), options.stack)
        _fail(report, explanation or f"pulumi {options.command} failed on stack '{options.stack}': see the log above")
    except RuntimeError as error:
        # The automation API raises a plain RuntimeError when the engine exits without its summary event.
        _record_events(report, events)
        _fail(report, f"pulumi {options.command} on stack '{options.stack}' ended without a result ({error}): "
              "see the log above")


def _preview(stack: StackLike, options: Options, events: list[EngineEvent], report: summary.Report) -> None:
    stack.preview(diff=True, policy_packs=options.policy_packs or None, **_streams(events))
    _record_events(report, events)
    decision = guardrails.decide_up(report.guarded, options.allow_replace)
    if not decision.allowed:
        _refuse(report, decision.message.replace("refusing:", "`up` would refuse:", 1))
        return
    if report.guarded:
        report.messages.append(decision.message)
    _finish(report, guardrails.has_changes(report.counts), changed_outcome="changes")


def _up(stack: StackLike, options: Options, events: list[EngineEvent], report: summary.Report) -> None:
    stack.preview(diff=True, policy_packs=options.policy_packs or None, **_streams(events))
    _record_events(report, events)
    decision = guardrails.decide_up(report.guarded, options.allow_replace)
    if not decision.allowed:
        _refuse(report, decision.message)
        return
    if report.guarded:
        report.messages.append(decision.message)
    if not guardrails.has_changes(report.counts):
        _finish(report, False, changed_outcome="applied")
        return
    events.clear()
    stack.up(policy_packs=options.policy_packs or None, **_streams(events))
    _record_events(report, events, keep_guarded=True)
    _finish(report, guardrails.has_changes(report.counts), changed_outcome="applied")


def _refresh(stack: StackLike, options: Options, events: list[EngineEvent], report: summary.Report) -> None:
    stack.refresh(**_streams(events))
    _record_events(report, events)
    _finish(report, guardrails.has_changes(report.counts), changed_outcome="applied")


def _destroy(stack: StackLike, options: Options, events: list[EngineEvent], report: summary.Report) -> None:
    stack.destroy(**_streams(events))
    # Every resource is deleted on purpose here: the guarded list would only repeat the whole stack.
    _record_events(report, events, keep_guarded=True)
    _finish(report, guardrails.has_changes(report.counts), changed_outcome="applied")


def _outputs(stack: StackLike, options: Options, events: list[EngineEvent], report: summary.Report) -> None:
    shown = {k: "[secret]" if v.secret else _plain(v.value) for k, v in stack.outputs().items()}
    print(json.dumps(shown, indent=2, sort_keys=True), flush=True)
    report.outputs = shown
    report.outcome, report.exit_code = "no changes", EXIT_NO_CHANGES


_COMMAND_RUNNERS = {
    "preview": _preview,
    "up": _up,
    "refresh": _refresh,
    "destroy": _destroy,
    "outputs": _outputs,
}


def load_stack_files(work_dir: Path, stack: str) -> diagnose.StackFiles:
    project_file = work_dir / "Pulumi.yaml"
    stack_file = work_dir / f"Pulumi.{stack}.yaml"
    project = yaml.safe_load(project_file.read_text()) if project_file.exists() else {}
    settings = None
    if stack_file.exists():
        settings = yaml.safe_load(stack_file.read_text()) or {}
    return diagnose.StackFiles(stack=stack, project=project or {}, settings=settings)


def _logged_in(env: Mapping[str, str]) -> bool:
    """Has `pulumi login` stored a current backend? (Only the backend URL is read, never a token.)"""
    home = Path(env.get("PULUMI_HOME") or Path.home() / ".pulumi")
    try:
        return bool(json.loads((home / "credentials.json").read_text()).get("current"))
    except (OSError, ValueError):
        return False


def _streams(events: list[EngineEvent]) -> dict[str, Any]:
    # The engine's own output streams live; structured events are kept for the guardrails and summary.
    return {
        "on_output": lambda line: print(line, flush=True),
        "on_error": lambda line: print(line, file=sys.stderr, flush=True),
        "on_event": events.append,
    }


def _record_events(report: summary.Report, events: list[EngineEvent], keep_guarded: bool = False) -> None:
    report.counts = guardrails.change_counts(events)
    report.violations = guardrails.policy_violations(events)
    if not keep_guarded:
        report.guarded = guardrails.guarded_changes(events)


def _finish(report: summary.Report, changed: bool, changed_outcome: str) -> None:
    if changed:
        report.outcome, report.exit_code = changed_outcome, EXIT_CHANGES
    else:
        report.outcome, report.exit_code = "no changes", EXIT_NO_CHANGES


def _refuse(report: summary.Report, message: str) -> None:
    print(f"refused: {message}", file=sys.stderr, flush=True)
    report.messages.append(message)
    report.outcome, report.exit_code = "refused", EXIT_REFUSED


def _fail(report: summary.Report, message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    report.messages.append(message)
    report.outcome, report.exit_code = "failed", EXIT_FAILED


def _is_path(key: str) -> bool:
    name = key.split(":", 1)[-1]
    return "." in name or "[" in name


def _plain_outputs(stack: StackLike) -> dict[str, Any]:
    return {key: output.value for key, output in stack.outputs().items()}


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
