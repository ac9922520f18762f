"""Pytest fixtures of the deploy tests: a project directory and the environment CI exports."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A project directory with Pulumi.yaml and passphrase-encrypted dev/prod stack files."""
    (tmp_path / "Pulumi.yaml").write_text(
        "name: iot\nruntime:\n  name: python\n  options:\n    virtualenv: venv\n"
        "config:\n  databaseUrl:\n    type: string\n    secret: true\n  domain:\n    type: string\n"
        "    default: my-iot-app.com\n"
    )
    for stack, extra in (("dev", ""), ("prod", "  iot:monitors:\n    - {name: tokyo, provider: linode}\n")):
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(
            "encryptionsalt: v1:abc:def\nconfig:\n  iot:databaseUrl:\n    secure: v1:AAAA\n" + extra
        )
    return tmp_path


@pytest.fixture
def ci_env(tmp_path: Path) -> dict[str, str]:
    """What the workflows export: backend token, passphrase, provider tokens, a step summary file."""
    summary = tmp_path / "step-summary.md"
    summary.write_text("")
    return {
        "PULUMI_ACCESS_TOKEN": "pul-test",
        "PULUMI_CONFIG_PASSPHRASE": "test-passphrase",
        "HCLOUD_TOKEN": "h" * 64,
        "CLOUDFLARE_API_TOKEN": "c" * 40,
        "LINODE_TOKEN": "l" * 64,
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
