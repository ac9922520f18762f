"""The real pulumi.automation Stack driven against a stand-in `pulumi` executable.

The stand-in answers the commands the automation API sends and writes recorded engine events to the
``--event-log`` file (the transport the SDK uses for CLIs up to 3.205), so these tests check the plumbing
the replay tests cannot: the arguments our options become, event streaming, and CLI errors.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from deploy import automation
from deploy.automation import EXIT_CHANGES, EXIT_FAILED, EXIT_REFUSED, Options

FIXTURES = Path(__file__).resolve().parent / "fixtures"
POLICY = str(Path(__file__).resolve().parents[2] / "policy")

FAKE_PULUMI = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
words = [a for a in args if a != "--non-interactive"]
if words[:1] == ["version"]:
    print("v3.200.0")  # <= 3.205: the SDK reads engine events from the --event-log file
    sys.exit(0)
command = " ".join(words[:2]) if words[0] == "stack" else words[0]
failure = os.environ.get("FAKE_PULUMI_FAIL_" + command.replace(" ", "_").upper())
if failure:
    sys.stderr.write(failure + "\\n")
    sys.exit(255)
fixture = os.environ.get("FAKE_PULUMI_EVENTS_" + command.upper())
if fixture:
    print(f"Previewing {{command}} (dev):" if command == "preview" else f"Updating (dev):", flush=True)
    log_file = args[args.index("--event-log") + 1]
    with open(os.path.join(os.environ["FAKE_PULUMI_FIXTURES"], fixture + ".jsonl")) as src, open(log_file, "a") as dst:
        dst.write(src.read())
if command == "stack output":
    print("{{}}")
elif command == "stack history":
    print(json.dumps([{{"kind": "update", "startTime": "2026-11-27T21:00:00.000Z", "message": "", "environment": {{}},
                       "config": {{}}, "result": "succeeded", "endTime": "2026-11-27T21:01:00.000Z", "version": 7,
                       "resourceChanges": {{"update": 3, "create": 1}}}}]))
sys.exit(0)
"""


@pytest.fixture
def fake_cli(tmp_path, monkeypatch):
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    executable = bin_dir / "pulumi"
    executable.write_text(FAKE_PULUMI.format(python=sys.executable))
    executable.chmod(0o755)
    log = tmp_path / "pulumi-argv.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.setenv("FAKE_PULUMI_FIXTURES", str(FIXTURES))

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def command_calls(calls, name):
    return [c for c in calls if name in c and "version" not in c]


def test_preview_runs_the_policy_pack_and_streams_the_engine(fake_cli, monkeypatch, project_dir, ci_env, capsys):
    monkeypatch.setenv("FAKE_PULUMI_EVENTS_PREVIEW", "preview_dev_updates")
    options = Options(command="preview", stack="dev", work_dir=project_dir, policy_packs=[POLICY])
    assert automation.run(options, env=ci_env) == EXIT_CHANGES
    (preview,) = command_calls(fake_cli(), "preview")
    assert preview[preview.index("--policy-pack") + 1] == POLICY
    assert "--diff" in preview and preview[preview.index("--stack") + 1] == "dev"
    assert ["--non-interactive", "stack", "select", "--stack", "dev"] in fake_cli()
    assert "Previewing preview (dev):" in capsys.readouterr().out
    assert "| update | 3 |" in Path(ci_env["GITHUB_STEP_SUMMARY"]).read_text()


def test_up_refused_by_the_guardrail_never_reaches_pulumi_up(fake_cli, monkeypatch, project_dir, ci_env):
    monkeypatch.setenv("FAKE_PULUMI_EVENTS_PREVIEW", "preview_prod_replace_server")
    monkeypatch.setenv("FAKE_PULUMI_EVENTS_UP", "up_dev_updates")
    options = Options(command="up", stack="prod", work_dir=project_dir, policy_packs=[POLICY])
    assert automation.run(options, env=ci_env) == EXIT_REFUSED
    assert command_calls(fake_cli(), "up") == []


def test_up_with_allow_replace_runs_pulumi_up_with_the_policy_pack(fake_cli, monkeypatch, project_dir, ci_env):
    monkeypatch.setenv("FAKE_PULUMI_EVENTS_PREVIEW", "preview_prod_replace_server")
    monkeypatch.setenv("FAKE_PULUMI_EVENTS_UP", "up_dev_updates")
    options = Options(command="up", stack="prod", work_dir=project_dir, policy_packs=[POLICY], allow_replace=True,
                      config={"iot:imageTag": "9a8b7c6"})
    assert automation.run(options, env=ci_env) == EXIT_CHANGES
    calls = fake_cli()
    (up,) = command_calls(calls, "up")
    assert "--yes" in up and up[up.index("--policy-pack") + 1] == POLICY
    (config_set,) = [c for c in calls if "config" in c]
    assert "iot:imageTag" in config_set and "9a8b7c6" in config_set and "--plaintext" in config_set
    # Order: config first, then the guarding preview, then the update.
    order = [next(w for w in c if w in ("config", "preview", "up")) for c in calls if {"config", "preview", "up"} & set(c)]
    assert order == ["config", "preview", "up"]


def test_a_stack_missing_from_the_backend_is_explained(fake_cli, monkeypatch, project_dir, ci_env, capsys):
    monkeypatch.setenv("FAKE_PULUMI_FAIL_STACK_SELECT", "error: no stack named 'dev' found")
    options = Options(command="preview", stack="dev", work_dir=project_dir, policy_packs=[POLICY])
    assert automation.run(options, env=ci_env) == EXIT_FAILED
    assert "create it with `pulumi stack init dev`" in capsys.readouterr().err


def test_engine_exit_without_summary_is_a_failure_not_a_crash(fake_cli, monkeypatch, project_dir, ci_env, capsys):
    # The engine died before its summary: the automation API raises "summary event never found".
    monkeypatch.setenv("FAKE_PULUMI_EVENTS_PREVIEW", "preview_dev_engine_crashed")
    options = Options(command="preview", stack="dev", work_dir=project_dir, policy_packs=[POLICY])
    assert automation.run(options, env=ci_env) == EXIT_FAILED
    assert "ended without a result" in capsys.readouterr().err
