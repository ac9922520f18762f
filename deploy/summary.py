"""Markdown summary of one deploy command: counts per operation, guarded resources, policy violations."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy.guardrails import GuardedChange, PolicyViolation

# Display order of operations in the counts table (anything else follows alphabetically).
_OP_ORDER = ("create", "update", "replace", "delete", "same")
_OUTCOME_ICON = {"no changes": "✅", "changes": "📝", "applied": "🚀", "refused": "⛔", "failed": "❌"}


@dataclass
class Report:
    command: str
    stack: str
    outcome: str  # one of _OUTCOME_ICON's keys
    exit_code: int
    counts: dict[str, int] = field(default_factory=dict)
    guarded: list[GuardedChange] = field(default_factory=list)
    violations: list[PolicyViolation] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


def marker(command: str, stack: str) -> str:
    """An invisible HTML comment identifying the summary, for tools that update a PR comment in place."""
    return f"<!-- iot-deploy:{command}:{stack} -->"


def render(report: Report) -> str:
    icon = _OUTCOME_ICON.get(report.outcome, "")
    lines = [
        marker(report.command, report.stack),
        f"### {icon} `{report.command}` on stack `{report.stack}`: {report.outcome} (exit {report.exit_code})",
        "",
    ]
    lines += [f"> {_escape(m)}" for m in report.messages]
    if report.messages:
        lines.append("")
    if report.counts:
        lines += ["| operation | resources |", "| --- | ---: |"]
        lines += [f"| {op} | {n} |" for op, n in _ordered(report.counts)]
        lines.append("")
    if report.guarded:
        lines += [
            "**Protected resources deleted or replaced**",
            "",
            "| op | type | name | why it matters | reason |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {c.op} | `{c.type}` | `{c.name}` | {_escape(c.kind)} | {_escape(c.reason)} |" for c in report.guarded
        ]
        lines.append("")
    if report.violations:
        lines += ["**Policy violations**", "", "| policy | enforcement | resource | message |", "| --- | --- | --- | --- |"]
        lines += [
            f"| `{v.policy}` | {v.enforcement} | `{v.urn.rsplit('::', 1)[-1] if v.urn else '(stack)'}` "
            f"| {_escape(v.message)} |"
            for v in report.violations
        ]
        lines.append("")
    if report.outputs:
        lines += ["| output | value |", "| --- | --- |"]
        lines += [f"| `{k}` | {_escape(v)} |" for k, v in sorted(report.outputs.items())]
        lines.append("")
    return "\n".join(lines)


def publish(markdown: str, env: Mapping[str, str] | None = None, extra_file: str | None = None) -> None:
    """Append to $GITHUB_STEP_SUMMARY when set (GitHub renders it on the run page), else print it.

    ``extra_file`` also receives the Markdown (overwritten): the PR-comment step reads it from there.
    """
    env = os.environ if env is None else env
    step_summary = env.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
    else:
        sys.stdout.write(markdown + "\n")
        sys.stdout.flush()
    if extra_file:
        Path(extra_file).parent.mkdir(parents=True, exist_ok=True)
        Path(extra_file).write_text(markdown + "\n", encoding="utf-8")


def _ordered(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    known = [(op, counts[op]) for op in _OP_ORDER if op in counts]
    rest = sorted((op, n) for op, n in counts.items() if op not in _OP_ORDER)
    return known + rest


def _escape(text: str) -> str:
    # Table cells: a pipe would end the cell and a newline the row.
    return text.replace("|", "\\|").replace("\n", " ")
