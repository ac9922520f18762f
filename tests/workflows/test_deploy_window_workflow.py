"""deploy.yml opens the deploy window before `up` and always closes it, whatever `up` did.

The step conditions are evaluated the way GitHub Actions does (a step without `if` runs only while
nothing failed and the run is not cancelled; `always()` runs regardless), and the closing step's
script is run with a stand-in `venv/bin/python` to see what it really calls.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from test_workflows import REPO, deploy_invocations, load

from deploy import window

DEPLOY = REPO / ".github/workflows/deploy.yml"
JOBS = {"dev": "dev", "prod": "prod"}


def job_steps(job: str) -> list[dict]:
    return load(DEPLOY)["jobs"][job]["steps"]


def index_of(steps: list[dict], predicate) -> int:
    (found,) = [i for i, step in enumerate(steps) if predicate(step)]
    return found


def calls(step: dict, window_call: bool) -> list[list[str]]:
    return deploy_invocations(step.get("run", ""), window=window_call)


def window_step(action: str, stack: str):
    return lambda step: any(args[:3] == [action, "--stack", stack] for args in calls(step, True))


def up_step(stack: str):
    return lambda step: any(args[:3] == ["up", "--stack", stack] for args in calls(step, False))


STATUS = {"success()", "always()", "failure()", "cancelled()"}


def runs(step: dict, failed: bool, cancelled: bool, outcomes: dict[str, str] | None = None) -> bool:
    """GitHub Actions' step condition, for the expressions these workflows use: status functions and
    `steps.<id>.outcome == '<value>'` joined by `&&` (no status function means `success() && ...`)."""
    condition = str(step.get("if", "success()")).replace("${{", "").replace("}}", "").strip()
    terms = [t.strip() for t in condition.split("&&")]
    if not STATUS & set(terms):
        terms.insert(0, "success()")
    values = {"success()": not failed and not cancelled, "always()": True, "failure()": failed,
              "cancelled()": cancelled}
    result = True
    for term in terms:
        if term in values:
            result = result and values[term]
            continue
        match = re.fullmatch(r"steps\.([\w-]+)\.outcome == '(\w+)'", term)
        assert match, f"the simulator does not know {term!r}"
        result = result and (outcomes or {}).get(match.group(1), "skipped") == match.group(2)
    return result


def simulate(steps: list[dict], failing: int | None = None, cancelled_at: int | None = None) -> list[int]:
    """Indices of the steps that run when step `failing` fails, or the run is cancelled during `cancelled_at`."""
    ran, failed, cancelled, outcomes = [], False, False, {}
    for i, step in enumerate(steps):
        if runs(step, failed, cancelled, outcomes):
            ran.append(i)
            if i == failing:
                failed = True
            if i == cancelled_at:
                cancelled = True
            outcome = "failure" if i == failing else "cancelled" if i == cancelled_at else "success"
        else:
            outcome = "skipped"
        if "id" in step:
            outcomes[step["id"]] = outcome
    return ran


@pytest.mark.parametrize("job", JOBS)
def test_the_window_opens_before_up_and_closes_after_it(job):
    stack = JOBS[job]
    steps = job_steps(job)
    opened = index_of(steps, window_step("open", stack))
    deployed = index_of(steps, up_step(stack))
    closed = index_of(steps, window_step("close", stack))
    assert opened < deployed < closed
    assert str(steps[closed].get("if")) == "always()"
    assert "if" not in steps[opened], "the window opens only on the normal path"
    for i, step in enumerate(steps):
        if i not in (opened, closed):
            assert calls(step, True) == [], f"step {i} touches the window"


@pytest.mark.parametrize("job", JOBS)
def test_the_closing_step_runs_when_up_fails_when_open_fails_and_when_the_run_is_cancelled(job):
    stack = JOBS[job]
    steps = job_steps(job)
    opened = index_of(steps, window_step("open", stack))
    deployed = index_of(steps, up_step(stack))
    closed = index_of(steps, window_step("close", stack))
    assert closed in simulate(steps)  # success
    assert closed in simulate(steps, failing=deployed), "`up` failed (or was refused by a guardrail)"
    assert closed in simulate(steps, cancelled_at=deployed), "cancelled or timed out during `up`"
    after_open_failed = simulate(steps, failing=opened)
    assert closed in after_open_failed and deployed not in after_open_failed, "half-open: clean up, never deploy"


@pytest.mark.parametrize("job", JOBS)
def test_the_window_steps_parse_and_admit_only_the_runner_address(job):
    stack = JOBS[job]
    for step in job_steps(job):
        for args in calls(step, True):
            parsed = window.build_parser().parse_args(args)
            assert parsed.stack == stack
            if parsed.action == "open":
                assert parsed.address == "auto", "the runner's own address, looked up, never a fixed range"
    env = load(DEPLOY)["jobs"][job]["env"]
    assert env["HCLOUD_TOKEN"] == "${{ secrets.HCLOUD_TOKEN }}"
    if window.stack_uses_linode(REPO, stack):
        assert env["LINODE_TOKEN"] == "${{ secrets.LINODE_TOKEN }}"


@pytest.mark.parametrize("job", JOBS)
def test_the_closing_step_calls_window_close_and_its_exit_code_is_the_steps(job, tmp_path: Path):
    stack = JOBS[job]
    steps = job_steps(job)
    script = steps[index_of(steps, window_step("close", stack))]["run"]
    record = tmp_path / "argv"
    stub = tmp_path / "venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    for code in (0, 1):
        stub.write_text(f'#!/bin/sh\necho "$@" > {record}\nexit {code}\n')
        stub.chmod(0o755)
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=tmp_path,
                              env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60)
        assert record.read_text().split() == ["-m", "deploy", "window", "close", "--stack", stack]
        assert done.returncode == code, "a failed close fails the job: someone must look at the firewall"
