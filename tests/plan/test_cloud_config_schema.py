"""The offline plan where `cloud-init` is not installed: the vendored cloud-init 22.4.2 schema, applied with
jsonschema, accepts and refuses the same user data as the real `cloud-init schema` binary."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import cloud_config_schema, plan

ROOT = Path(__file__).resolve().parents[2]
INSTALLED_SCHEMA = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")

# User data cloud-init refuses, each for a different reason.
BAD_USER_DATA = {
    "wrong type": "#cloud-config\npackages: 5\n",
    "wrong type in a union": "#cloud-config\nusers: 7\n",
    "missing required key": "#cloud-config\nwrite_files:\n  - content: hello\n",
    "enum": "#cloud-config\nwrite_files:\n  - path: /etc/x\n    encoding: rot13\n    content: x\n",
    "additional property in a module": "#cloud-config\nntp:\n  enabled: true\n  srvers: [a]\n",
    "not a mapping": "#cloud-config\n- just\n- a list\n",
    "no header": "packages: [curl]\n",
    "not YAML": "#cloud-config\npackages: [curl\n",
}


def real_cloud_init_accepts(path: Path) -> bool:
    done = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True,
                          timeout=120)
    return done.returncode == 0


def test_vendored_schema_is_the_one_the_installed_cloud_init_uses() -> None:
    vendored = cloud_config_schema.SCHEMA_PATH.read_bytes()
    assert vendored == INSTALLED_SCHEMA.read_bytes(), "update deploy/vendor/ (see its README.md)"
    readme = (cloud_config_schema.SCHEMA_PATH.parent / "README.md").read_text()
    assert hashlib.sha256(vendored).hexdigest() in readme
    assert cloud_config_schema.CLOUD_INIT_VERSION in readme
    version = subprocess.run(["cloud-init", "--version"], capture_output=True, text=True, timeout=60)
    assert cloud_config_schema.CLOUD_INIT_VERSION in version.stdout + version.stderr


@pytest.mark.parametrize("case", sorted(BAD_USER_DATA))
def test_fallback_refuses_what_cloud_init_refuses(case: str, tmp_path: Path) -> None:
    path = tmp_path / "user-data.yaml"
    path.write_text(BAD_USER_DATA[case])
    assert not real_cloud_init_accepts(path), "the case must be bad for the real validator too"
    assert cloud_config_schema.problems(BAD_USER_DATA[case]), case


def test_fallback_accepts_every_rendered_user_data_cloud_init_accepts(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    written = plan.write_artifacts(plan._cached_run("prod"), out)
    assert len(written["user-data"]) == 9
    for path in written["user-data"]:
        assert cloud_config_schema.problems(path.read_text()) == [], path.name
    assert real_cloud_init_accepts(written["user-data"][0])


def test_plan_without_the_cloud_init_binary_still_validates(tmp_path: Path) -> None:
    """`make plan` where cloud-init is not installed: PATH holds only the virtualenv's tools."""
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": str(venv_bin)}
    out = tmp_path / "plan"
    done = subprocess.run([sys.executable, "-m", "deploy.plan", "--stack", "dev", "--out", str(out)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all artifacts valid" in done.stdout
    assert "not installed" not in done.stdout + done.stderr

    # The same broken user data the real binary catches in test_offline_plan, caught without it.
    user_data = sorted((out / "user-data").iterdir())[0]
    user_data.write_text(user_data.read_text() + "\npackages: 5\n")
    broken = subprocess.run([sys.executable, "-c", "import sys; from deploy import plan; "
                             f"print('\\n'.join(plan.validate(__import__('pathlib').Path({str(out)!r}))))"],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert broken.returncode == 0, broken.stderr
    assert f"user-data/{user_data.name}: cloud-init schema failed" in broken.stdout
    assert "packages: 5 is not of type 'array'" in broken.stdout
