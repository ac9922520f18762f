"""e2e-cloud.yml: opt-in, skipped (not failed) without its secrets, and the throwaway stack always goes away.

Schema validity, pinned actions, shellcheck and secrets-from-secrets are checked for every workflow
in test_workflows.py; here: triggers, the secrets gate (its script run for real), the unique stack
name, and which steps run when `up` or the smoke checks fail or the run is cancelled.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from test_deploy_window_workflow import simulate
from test_workflows import REPO, load, triggers

from deploy import throwaway, window
from deploy.cli import parse_options

WORKFLOW = REPO / ".github/workflows/e2e-cloud.yml"
SECRETS = ["HCLOUD_TOKEN", "CLOUDFLARE_API_TOKEN", "E2E_DOMAIN", "E2E_CLOUDFLARE_ZONE_ID", "E2E_CLOUDFLARE_ACCOUNT_ID",
           "E2E_DATABASE_URL", "E2E_REDIS_URL", "PULUMI_ACCESS_TOKEN"]


def steps() -> list[dict]:
    return load(WORKFLOW)["jobs"]["e2e"]["steps"]


def step(name_part: str) -> tuple[int, dict]:
    (found,) = [(i, s) for i, s in enumerate(steps()) if name_part in s.get("name", "")]
    return found


def python_module_args(script: str, module: str) -> list[str]:
    """Arguments after `-m <module>` in a run script (line continuations joined, `|| ...` dropped)."""
    joined = script.replace("\\\n", " ")
    for line in joined.splitlines():
        words = shlex.split(line.split("||")[0]) if f"-m {module} " in line else []
        if words:
            return words[words.index(module) + 1:]
    raise AssertionError(f"no `-m {module}` in {script!r}")


def test_it_runs_on_demand_and_nightly_only():
    on = triggers(load(WORKFLOW))
    assert set(on) == {"workflow_dispatch", "schedule"}
    assert on["schedule"][0]["cron"]


def run_gate(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, str]:
    script = load(WORKFLOW)["jobs"]["gate"]["steps"][0]["run"]
    output = tmp_path / "github-output"
    output.write_text("")
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), **env},
                          capture_output=True, text=True, timeout=60)
    return done, output.read_text()


def test_without_its_secrets_the_run_is_skipped_not_failed(tmp_path):
    done, output = run_gate({}, tmp_path)
    assert done.returncode == 0
    assert output == "ready=false\n"
    assert "::notice::e2e-cloud skipped" in done.stdout and "E2E_DOMAIN" in done.stdout
    job = load(WORKFLOW)["jobs"]["e2e"]
    assert job["needs"] == ["gate", "images"] and job["if"] == "needs.gate.outputs.ready == 'true'"
    images = load(WORKFLOW)["jobs"]["images"]
    assert images["needs"] == "gate" and images["if"] == job["if"], "nothing is built or pushed either"


@pytest.mark.parametrize("missing", SECRETS)
def test_each_missing_secret_skips_the_run(tmp_path, missing):
    env = {name: "set" for name in SECRETS if name != missing}
    done, output = run_gate(env, tmp_path)
    assert (done.returncode, output) == (0, "ready=false\n")


def test_with_every_secret_the_run_goes_ahead(tmp_path):
    done, output = run_gate({name: "set" for name in SECRETS}, tmp_path)
    assert (done.returncode, output) == (0, "ready=true\n")
    done, output = run_gate({**{name: "set" for name in SECRETS if name != "PULUMI_ACCESS_TOKEN"},
                             "PULUMI_BACKEND_URL": "s3://bucket"}, tmp_path)
    assert output == "ready=true\n", "a self-managed backend works too"


def test_the_throwaway_stack_is_unique_per_run_and_dev_sized():
    env = load(WORKFLOW)["jobs"]["e2e"]["env"]
    assert "${{ github.run_id }}" in env["STACK"] and "${{ github.run_attempt }}" in env["STACK"]
    _, create = step("Create the throwaway stack")
    args = python_module_args(create["run"], "deploy.throwaway")
    assert throwaway.PROTECTED_STACKS == ("dev", "prod")
    assert args[args.index("--from") + 1] == "dev"
    assert args[args.index("--zone-id") + 1] == "$E2E_CLOUDFLARE_ZONE_ID", "its own zone, never dev's or prod's"


def test_up_then_smoke_then_always_destroy_then_always_close():
    order = [step(name)[0] for name in ("Create the throwaway", "Open the deploy window", "Deploy the throwaway",
                                        "Smoke checks", "Destroy", "Close the deploy window", "Remove the emptied")]
    assert order == sorted(order)
    _, up = step("Deploy the throwaway")
    assert parse_options(python_module_args(up["run"], "deploy"))  # the same guardrails and policy pack
    _, smoke_step = step("Smoke checks")
    smoke_args = python_module_args(smoke_step["run"], "deploy.smoke")
    assert smoke_args[:1] == ["--outputs"] and "--dry-run" not in smoke_args
    assert "umask 077" in smoke_step["run"], "the outputs file holds secrets"
    _, destroy = step("Destroy")
    assert destroy["if"] == "always()" and 'rm -f "$RUNNER_TEMP/outputs.json"' in destroy["run"]
    destroy_args = python_module_args(destroy["run"], "deploy")
    assert destroy_args[:3] == ["destroy", "--stack", "$STACK"]
    _, close = step("Close the deploy window")
    assert close["if"] == "always()"
    assert window.build_parser().parse_args(python_module_args(close["run"], "deploy")[1:]).action == "close"
    _, remove = step("Remove the emptied")
    assert "steps.destroy.outcome == 'success'" in remove["if"], "never forget a stack that still owns resources"


@pytest.mark.parametrize("failing", ["Deploy the throwaway", "Smoke checks", "Open the deploy window",
                                     "Create the throwaway"])
def test_destroy_and_close_run_whatever_failed(failing):
    all_steps = steps()
    ran = simulate(all_steps, failing=step(failing)[0])
    assert step("Destroy")[0] in ran and step("Close the deploy window")[0] in ran


def test_destroy_and_close_run_when_the_run_is_cancelled_or_times_out():
    all_steps = steps()
    ran = simulate(all_steps, cancelled_at=step("Deploy the throwaway")[0])
    assert step("Destroy")[0] in ran and step("Close the deploy window")[0] in ran
    assert step("Smoke checks")[0] not in ran


def test_a_stack_whose_destroy_failed_is_kept_for_a_human():
    all_steps = steps()
    ran = simulate(all_steps, failing=step("Destroy")[0])
    assert step("Close the deploy window")[0] in ran
    assert step("Remove the emptied")[0] not in ran
    assert step("Remove the emptied")[0] in simulate(all_steps, failing=step("Smoke checks")[0])
