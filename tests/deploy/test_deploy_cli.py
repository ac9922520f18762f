"""`python -m deploy` as a user runs it: arguments, usage errors and exit codes of a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy import cli

REPO = Path(__file__).resolve().parents[2]


def deploy(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    # PATH without a pulumi CLI (this machine has none; CI runners may): only an empty directory.
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    env = {"PATH": str(empty), "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "deploy", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_defaults_use_the_repository_policy_pack_and_project():
    options = cli.parse_options(["preview", "--stack", "dev"])
    assert options.policy_packs == [str(REPO / "policy")]
    assert options.work_dir == REPO
    assert not options.allow_replace and not options.yes_destroy_prod


def test_flags_are_parsed():
    options = cli.parse_options([
        "up", "--stack", "org/prod", "--allow-replace", "--no-policy-pack", "--config", "iot:imageTag=abc123",
        "--secret-env", "hcloud:token=HCLOUD_TOKEN", "--summary-file", "out/prod.md",
    ])
    assert options.stack_short_name == "prod"
    assert options.allow_replace and options.policy_packs == []
    assert options.config == {"iot:imageTag": "abc123"}
    assert options.secret_env == {"hcloud:token": "HCLOUD_TOKEN"}
    assert options.summary_file == "out/prod.md"


@pytest.mark.parametrize(
    "argv",
    [
        ["preview"],
        ["deploy", "--stack", "dev"],
        ["up", "--stack", "dev", "--config", "imageTag=abc"],
        ["up", "--stack", "dev", "--policy-pack", "/nonexistent-pack"],
    ],
)
def test_usage_errors_exit_1_not_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse_options(argv)
    assert exc.value.code == 1
    assert "error:" in capsys.readouterr().err


def test_a_secret_passed_by_mistake_is_not_echoed(capsys):
    with pytest.raises(SystemExit):
        cli.parse_options(["up", "--stack", "dev", "--secret-env", "hcloud:token=hc_live_4f9a8b7c"])
    assert "hc_live_4f9a8b7c" not in capsys.readouterr().err


def test_without_the_cli_the_command_explains_in_one_line_and_exits_1(tmp_path):
    result = deploy("preview", "--stack", "dev", tmp_path=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "`pulumi` CLI is not on PATH" in lines[0]
    # Outside GitHub Actions the summary goes to stdout.
    assert "`preview` on stack `dev`: failed (exit 1)" in result.stdout


def test_destroying_prod_without_the_flag_exits_3(tmp_path):
    result = deploy("destroy", "--stack", "prod", tmp_path=tmp_path)
    assert result.returncode == 3
    assert "--yes-destroy-prod" in result.stderr


def test_help_lists_the_exit_codes(tmp_path):
    result = deploy("--help", tmp_path=tmp_path)
    assert result.returncode == 0
    assert "0 no changes, 2 changes" in " ".join(result.stdout.split())
