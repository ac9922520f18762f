"""The GitHub Actions workflows: schema-valid, pinned, secrets only from secrets.*, and they do their job.

actionlint's PyPI wrapper downloads a binary (no internet here), so validity is checked with
check-jsonschema's vendored GitHub-workflow schema, shellcheck on every `run:` script, and the rules below.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy import cli

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(?:v\d+\.\d+\.\d+|[0-9a-f]{40})$")
SECRET_NAME = re.compile(r"TOKEN|PASSPHRASE|SECRET|PASSWORD|ACCESS_KEY|DATABASE_URL|REDIS_URL|BACKEND_URL")
SECRET_REF = re.compile(r"^\$\{\{\s*secrets\.[A-Z0-9_]+\s*\}\}$")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def triggers(doc: dict) -> dict:
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    return on if isinstance(on, dict) else {name: None for name in ([on] if isinstance(on, str) else on)}


def steps(doc: dict):
    for job_name, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, job, step


def uses_refs(doc: dict) -> list[str]:
    refs = [job["uses"] for job in doc["jobs"].values() if "uses" in job]
    return refs + [step["uses"] for _, _, step in steps(doc) if "uses" in step]


def env_blocks(doc: dict):
    yield "workflow", doc.get("env") or {}
    for job_name, job in doc["jobs"].items():
        yield job_name, job.get("env") or {}
        for index, step in enumerate(job.get("steps", [])):
            yield f"{job_name}.steps[{index}]", step.get("env") or {}


def pinned_problems(refs: list[str]) -> list[str]:
    return [ref for ref in refs if not ref.startswith("./") and not PINNED.match(ref)]


def inline_secret_problems(doc: dict) -> list[str]:
    problems = []
    for where, env in env_blocks(doc):
        for name, value in env.items():
            if SECRET_NAME.search(name) and not SECRET_REF.match(str(value)):
                problems.append(f"{where}: env {name} is not taken from secrets.*")
    for job_name, _, step in steps(doc):
        for key, value in (step.get("with") or {}).items():
            if re.search(r"password|token|secret", key, re.I) and not SECRET_REF.match(str(value)):
                problems.append(f"{job_name}: with.{key} is not taken from secrets.*")
        if "secrets." in str(step.get("run", "")):
            problems.append(f"{job_name}: a run script reads secrets.* directly (pass it through env)")
    return problems


def test_there_are_the_five_workflows():
    assert {p.name for p in WORKFLOWS} == {"test.yml", "preview.yml", "deploy.yml", "images.yml", "e2e-cloud.yml"}


def test_workflows_validate_against_the_github_workflow_schema():
    result = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows",
                             *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: 42\n"
                      "        with: not-a-mapping\n")
    result = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(broken)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_an_exact_version(path):
    refs = uses_refs(load(path))
    assert refs, "a workflow without any action is suspicious"
    assert pinned_problems(refs) == []


def test_the_pin_check_catches_floating_refs():
    assert pinned_problems(["actions/checkout@v4", "pulumi/actions@main", "actions/checkout@v4.2.2",
                            "./.github/workflows/images.yml", "a/b@" + "0" * 40]) == [
        "actions/checkout@v4", "pulumi/actions@main"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_secrets_come_only_from_secrets(path):
    assert inline_secret_problems(load(path)) == []
    text = path.read_text()
    for pattern in (r"gh[pousr]_[A-Za-z0-9]{20,}", r"AKIA[0-9A-Z]{16}", r"PRIVATE KEY-----", r"://[^\s/:@]*:[^\s/@]+@"):
        assert not re.search(pattern, text), pattern


def test_the_inline_secret_check_catches_literals():
    doc = {"jobs": {"x": {"env": {"HCLOUD_TOKEN": "abc"}, "steps": [
        {"run": "echo ${{ secrets.X }}"}, {"uses": "a/b@v1.0.0", "with": {"password": "hunter2"}}]}}}
    assert len(inline_secret_problems(doc)) == 3


def test_pulumi_cli_version_matches_the_sdk_pin():
    sdk = re.search(r"^pulumi==([\d.]+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    for path in WORKFLOWS:
        for _, _, step in steps(load(path)):
            if step.get("uses", "").startswith("pulumi/actions@"):
                assert str(step["with"]["pulumi-version"]) == sdk, path.name


def run_scripts(doc: dict) -> list[tuple[str, dict, dict]]:
    return [(job_name, job, step) for job_name, job, step in steps(doc) if "run" in step]


def deploy_invocations(script: str, window: bool = False) -> list[list[str]]:
    """Argument lists of every `python -m deploy` in a script, with shell variables blanked out
    (`window=True`: the `python -m deploy window ...` calls instead, without the leading `window`)."""
    joined = script.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        if "-m deploy " not in line:
            continue
        command = line.split("||")[0]
        words = shlex.split(command)
        args = words[words.index("deploy") + 1:]
        if (args[:1] == ["window"]) is window:
            found.append([w for w in (args[1:] if window else args) if w != "$ALLOW_REPLACE"])
    return found


def test_test_workflow_runs_the_suite_and_plans_both_stacks_on_push_and_pr():
    doc = load(REPO / ".github/workflows/test.yml")
    assert {"push", "pull_request"} <= set(triggers(doc))
    scripts = " ".join(step["run"] for _, _, step in run_scripts(doc))
    assert ".ci/run" in scripts  # which ends in `make test`
    assert "make test" in (REPO / ".ci/run").read_text()
    assert doc["jobs"]["plan"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert 'make plan STACK="${{ matrix.stack }}"' in scripts


def test_preview_workflow_previews_both_stacks_into_one_sticky_comment():
    doc = load(REPO / ".github/workflows/preview.yml")
    assert set(triggers(doc)) == {"pull_request"}
    invocations = [args for _, _, step in run_scripts(doc) for args in deploy_invocations(step["run"])]
    assert [(a[0], a[a.index("--stack") + 1]) for a in invocations] == [("preview", "dev"), ("preview", "prod")]
    comment_steps = [s for _, _, s in steps(doc) if s.get("uses", "").startswith("marocchino/sticky-pull-request-comment@")]
    assert len(comment_steps) == 1
    assert comment_steps[0]["with"]["header"] and comment_steps[0]["if"] == "always()"
    assert doc["permissions"]["pull-requests"] == "write"


def test_deploy_workflow_ups_dev_then_prod_behind_the_production_environment():
    doc = load(REPO / ".github/workflows/deploy.yml")
    assert triggers(doc)["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    assert jobs["images"]["uses"] == "./.github/workflows/images.yml"
    assert "images" in jobs["dev"]["needs"]
    assert set(jobs["prod"]["needs"]) == {"images", "dev"}
    assert jobs["prod"]["environment"] == "production"
    assert doc["concurrency"]["cancel-in-progress"] is False
    for job_name, stack in (("dev", "dev"), ("prod", "prod")):
        (args,) = [a for s in jobs[job_name]["steps"] if "run" in s for a in deploy_invocations(s["run"])]
        assert args[0] == "up" and args[args.index("--stack") + 1] == stack
        assert "iot:imageTag=$IMAGE_TAG" in args
        assert jobs[job_name]["env"]["IMAGE_TAG"] == "${{ needs.images.outputs.tag }}"


def test_every_deploy_invocation_parses_and_its_secret_variables_are_set_from_secrets():
    for path in WORKFLOWS:
        for _, job, step in run_scripts(load(path)):
            for args in deploy_invocations(step["run"]):
                options = cli.parse_options(args)
                env = {**(job.get("env") or {}), **(step.get("env") or {})}
                for variable in options.secret_env.values():
                    assert SECRET_REF.match(env.get(variable, "")), f"{path.name}: ${variable} not from secrets.*"
                assert options.policy_packs == [str(REPO / "policy")], "preview/up run without the policy pack"


def test_images_are_built_from_the_repo_dockerfiles_and_tagged_with_the_commit():
    doc = load(REPO / ".github/workflows/images.yml")
    job = doc["jobs"]["build"]
    for entry in job["strategy"]["matrix"]["include"]:
        assert (REPO / entry["file"]).is_file() and (REPO / entry["context"]).is_dir()
    assert {e["image"] for e in job["strategy"]["matrix"]["include"]} == {"iot", "marketing", "docs"}
    scripts = " ".join(s["run"] for _, _, s in run_scripts(doc))
    assert "ghcr.io/" in scripts and "tag=${GITHUB_SHA}" in scripts
    assert triggers(doc)["workflow_call"]["outputs"]["tag"]["value"] == "${{ jobs.build.outputs.tag }}"
    assert doc["permissions"]["packages"] == "write"


def shellcheck_binary() -> str:
    found = shutil.which("shellcheck")
    assert found, "shellcheck is missing: apt-get install shellcheck (.ci/run does)"
    return found


def test_shellcheck_flags_a_careless_script(tmp_path):
    target = tmp_path / "careless.sh"
    target.write_text("#!/usr/bin/env bash\ncd $1\n")
    assert subprocess.run([shellcheck_binary(), "-s", "bash", str(target)], capture_output=True).returncode != 0


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_run_scripts_pass_shellcheck(path, tmp_path):
    shellcheck = shellcheck_binary()
    for index, (job_name, _, step) in enumerate(run_scripts(load(path))):
        # Expressions are substituted by the runner before bash sees the script: stand in a plain word.
        script = EXPRESSION.sub("EXPR", step["run"])
        target = tmp_path / f"{job_name}-{index}.sh"
        target.write_text("#!/usr/bin/env bash\nset -e\n" + script)
        result = subprocess.run([shellcheck, "-s", "bash", str(target)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name} {job_name} step {index}:\n{result.stdout}"


def step_named(path: Path, name: str) -> tuple[dict, dict]:
    for _, job, step in steps(load(REPO / path)):
        if step.get("name") == name:
            return job, step
    raise AssertionError(f"no step {name!r} in {path}")


def run_step(script: str, tmp_path: Path, env: dict[str, str], deploy_exit: int) -> subprocess.CompletedProcess:
    """Run a step script the way the runner does (bash -eo pipefail) with `venv/bin/python` exiting as given."""
    stub = tmp_path / "venv" / "bin" / "python"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text(f"#!/bin/sh\nexit {deploy_exit}\n")
    stub.chmod(0o755)
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=tmp_path,
                          env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("deploy_exit", "step_ok"), [(0, True), (2, True), (3, False), (1, False)])
def test_deploy_steps_accept_no_changes_and_changes_but_not_refusal_or_failure(tmp_path, deploy_exit, step_ok):
    for name in ("Deploy dev", "Deploy prod"):
        _, step = step_named(Path(".github/workflows/deploy.yml"), name)
        result = run_step(step["run"], tmp_path, {"IMAGE_TAG": "abc", "ALLOW_REPLACE": ""}, deploy_exit)
        assert (result.returncode == 0) is step_ok, (name, result.stderr)


@pytest.mark.parametrize("deploy_exit", [0, 1, 2, 3])
def test_preview_steps_record_the_exit_code_without_failing(tmp_path, deploy_exit):
    _, step = step_named(Path(".github/workflows/preview.yml"), "Preview prod")
    output = tmp_path / "github-output"
    result = run_step(step["run"], tmp_path, {"GITHUB_OUTPUT": str(output), "ALLOW_REPLACE": ""}, deploy_exit)
    assert result.returncode == 0
    assert output.read_text() == f"code={deploy_exit}\n"


@pytest.mark.parametrize(
    ("dev", "prod", "ok"),
    [("0", "2", True), ("2", "2", True), ("3", "0", False), ("0", "1", False), ("", "0", False)],
)
def test_preview_job_fails_when_a_preview_was_refused_or_failed(tmp_path, dev, prod, ok):
    _, step = step_named(Path(".github/workflows/preview.yml"), "Fail when a preview was refused or failed")
    result = run_step(step["run"], tmp_path, {"DEV_CODE": dev, "PROD_CODE": prod}, 0)
    assert (result.returncode == 0) is ok


def test_the_pr_comment_holds_both_stack_summaries(tmp_path):
    _, step = step_named(Path(".github/workflows/preview.yml"), "Assemble the pull-request comment")
    summaries = tmp_path / "build" / "summary"
    summaries.mkdir(parents=True)
    (summaries / "dev.md").write_text("<!-- iot-deploy:preview:dev -->\n### dev summary\n")
    result = run_step(step["run"], tmp_path, {"HEAD_SHA": "0123456789abcdef"}, 0)
    assert result.returncode == 0, result.stderr
    comment = (summaries / "comment.md").read_text()
    assert comment.startswith("## Pulumi preview of 0123456")
    assert "### dev summary" in comment
    assert "`prod`: no summary" in comment
