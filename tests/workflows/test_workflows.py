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
# A full commit SHA: a tag can be moved to other code, a SHA cannot (the version goes in a comment).
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
VERSION_COMMENT = re.compile(r"^\s+# v\d+\.\d+\.\d+$")
ZIZMOR = Path(sys.executable).with_name("zizmor")
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
def test_every_action_is_pinned_to_a_commit_sha_with_its_version_in_a_comment(path):
    refs = uses_refs(load(path))
    assert refs, "a workflow without any action is suspicious"
    assert pinned_problems(refs) == []
    for line in path.read_text().splitlines():
        match = USES_LINE.match(line)
        if match and not match.group(1).startswith("./"):
            assert VERSION_COMMENT.match(match.group(2)), f"{path.name}: {line.strip()} needs a `# vX.Y.Z` comment"


def test_the_pin_check_catches_tags_and_branches():
    assert pinned_problems(["actions/checkout@v4", "pulumi/actions@main", "actions/checkout@v4.2.2",
                            "./.github/workflows/images.yml", "a/b@" + "0" * 40, "a/b@" + "0" * 39]) == [
        "actions/checkout@v4", "pulumi/actions@main", "actions/checkout@v4.2.2", "a/b@" + "0" * 39]


def zizmor(*paths: Path) -> subprocess.CompletedProcess:
    assert ZIZMOR.exists(), "zizmor is missing: it is pinned in requirements-dev.in (make install)"
    return subprocess.run([str(ZIZMOR), "--offline", "--no-progress", "--min-severity", "medium", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_zizmor_finds_nothing_at_medium_severity_or_above():
    """GitHub Actions security lint (offline audits): the one accepted low finding is documented in docs/operator-manual.md."""
    result = zizmor(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_catches_an_unsafe_workflow(tmp_path):
    unsafe = tmp_path / "unsafe.yml"
    unsafe.write_text(
        "on: pull_request_target\npermissions: write-all\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with:\n          ref: ${{ github.event.pull_request.head.sha }}\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n")
    result = zizmor(unsafe)
    assert result.returncode != 0 and "template-injection" in result.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkouts_do_not_persist_credentials_and_jobs_declare_their_permissions(path):
    doc = load(path)
    assert doc.get("permissions") == {}, f"{path.name}: deny by default at the top, grant per job"
    for job_name, job in doc["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {job_name} must declare the permissions it needs"
        assert "write-all" not in str(job["permissions"])
    for job_name, _, step in steps(doc):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert (step.get("with") or {}).get("persist-credentials") is False, f"{path.name}: {job_name}"


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
    sdk = re.search(r"^pulumi==([\d.]+)$", (REPO / "requirements.in").read_text(), re.M).group(1)
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
    assert 'make plan STACK="$STACK"' in scripts  # the matrix value reaches the shell through env, not inlined
    (plan,) = [s for s in doc["jobs"]["plan"]["steps"] if s.get("name") == "Offline plan"]
    assert plan["env"]["STACK"] == "${{ matrix.stack }}"


def test_preview_workflow_previews_both_stacks_into_one_sticky_comment():
    doc = load(REPO / ".github/workflows/preview.yml")
    assert set(triggers(doc)) == {"pull_request"}
    invocations = [args for _, _, step in run_scripts(doc) for args in deploy_invocations(step["run"])]
    assert [(a[0], a[a.index("--stack") + 1]) for a in invocations] == [("preview", "dev"), ("preview", "prod")]
    # No release exists for a PR: the previews keep the images each stack already runs.
    assert all("--images-from-stack" in a for a in invocations)
    comment_steps = [s for _, _, s in steps(doc) if s.get("uses", "").startswith("marocchino/sticky-pull-request-comment@")]
    assert len(comment_steps) == 1
    assert comment_steps[0]["with"]["header"] and comment_steps[0]["if"] == "always()"
    assert doc["jobs"]["preview"]["permissions"]["pull-requests"] == "write"


def test_deploy_workflow_ups_dev_then_prod_with_the_verified_digests_of_this_commit():
    doc = load(REPO / ".github/workflows/deploy.yml")
    assert triggers(doc)["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    assert jobs["images"]["uses"] == "./.github/workflows/images.yml"
    assert jobs["images"]["permissions"]["id-token"] == "write"  # keyless signing
    assert "images" in jobs["dev"]["needs"]
    assert set(jobs["prod"]["needs"]) == {"images", "dev"}
    assert jobs["prod"]["environment"] == "production"
    for job_name, stack in (("dev", "dev"), ("prod", "prod")):
        job = jobs[job_name]
        # One deployment per stack at a time, never cancelled half way.
        assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
        names = [s.get("name", s.get("uses", "")) for s in job["steps"]]
        assert names.index("Verify the image signatures") < names.index(f"Deploy {stack}")
        (args,) = [a for s in job["steps"] if "run" in s for a in deploy_invocations(s["run"])]
        assert args[0] == "up" and args[args.index("--stack") + 1] == stack
        config = [args[i + 1] for i, word in enumerate(args) if word == "--config"]
        assert config == ["iot:images.app=$APP_IMAGE", "iot:images.marketing=$MARKETING_IMAGE",
                          "iot:images.docs=$DOCS_IMAGE"]
        for kind in ("app", "marketing", "docs"):
            assert job["env"][f"{kind.upper()}_IMAGE"] == f"${{{{ needs.images.outputs.{kind} }}}}"
        verify = next(s["run"] for s in job["steps"] if s.get("name") == "Verify the image signatures")
        assert "cosign verify" in verify and "images.yml@${GITHUB_REF}" in verify
        assert "https://token.actions.githubusercontent.com" in verify
        installs = " ".join(s["run"] for s in job["steps"] if "pip install" in s.get("run", ""))
        assert installs.count("--require-hashes") == installs.count("pip install") == 2


def test_every_deploy_invocation_parses_and_its_secret_variables_are_set_from_secrets():
    for path in WORKFLOWS:
        for _, job, step in run_scripts(load(path)):
            for args in deploy_invocations(step["run"]):
                options = cli.parse_options(args)
                env = {**(job.get("env") or {}), **(step.get("env") or {})}
                for variable in options.secret_env.values():
                    assert SECRET_REF.match(env.get(variable, "")), f"{path.name}: ${variable} not from secrets.*"
                assert options.policy_packs == [str(REPO / "policy")], "preview/up run without the policy pack"


def test_images_are_built_attested_signed_and_published_by_digest():
    doc = load(REPO / ".github/workflows/images.yml")
    job = doc["jobs"]["build"]
    builds = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    assert {s["id"] for s in builds} == {"app", "marketing", "docs"}
    for step in builds:
        settings = step["with"]
        assert (REPO / settings["file"]).is_file() and (REPO / settings["context"]).is_dir()
        assert settings["provenance"] == "mode=max" and settings["sbom"] is True
        assert settings["tags"].endswith(":${{ github.sha }}")
    assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}
    sign = next(s["run"] for s in job["steps"] if s.get("name", "").startswith("Sign the digests"))
    assert "cosign sign --yes" in sign
    outputs = triggers(doc)["workflow_call"]["outputs"]
    assert {k: v["value"] for k, v in outputs.items()} == {
        kind: f"${{{{ jobs.build.outputs.{kind} }}}}" for kind in ("app", "marketing", "docs")}


def test_the_test_workflow_audits_every_lock_file():
    doc = load(REPO / ".github/workflows/test.yml")
    script = " ".join(s["run"] for s in doc["jobs"]["audit"]["steps"] if "run" in s)
    assert "pip-audit" in script and "--require-hashes" in script
    for lock in ("requirements.txt", "requirements-dev.txt", "apps/requirements.txt", "policy/requirements.txt"):
        assert f"-r {lock}" in script


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
        result = run_step(step["run"], tmp_path, {"APP_IMAGE": "a@sha256:0", "ALLOW_REPLACE": ""}, deploy_exit)
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
