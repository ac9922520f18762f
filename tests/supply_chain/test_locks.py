"""Hash-locked dependencies: every lock file pins every package with hashes and agrees with its inputs,
and the image's install (apps/Dockerfile) succeeds from its lock alone with hashes required."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# lock file -> the files it is compiled from (`make lock`)
LOCKS = {
    "requirements.txt": ["requirements.in"],
    "requirements-dev.txt": ["requirements-dev.in", "requirements.in", "policy/requirements.in", "apps/pyproject.toml"],
    "policy/requirements.txt": ["policy/requirements.in"],
    "apps/requirements.txt": ["apps/pyproject.toml"],
}
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)")


def locked(lock: str) -> dict[str, str]:
    """name -> version of every requirement in a lock file; fails on any entry without a hash."""
    text = (ROOT / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 6)[-1])
    found = {}
    for entry in entries:
        match = PIN.match(entry)
        if not match:
            continue
        assert "--hash=sha256:" in entry, f"{lock}: {match.group(0)} has no hash"
        found[_norm(match.group(1))] = match.group(2)
    return found


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def declared(source: str) -> dict[str, str]:
    path = ROOT / source
    if path.name == "pyproject.toml":
        lines = tomllib.loads(path.read_text())["project"]["dependencies"]
    else:
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith(("#", "-"))]
    pins = {}
    for line in lines:
        match = PIN.match(line.strip())
        assert match, f"{source}: {line!r} is not pinned with =="
        pins[_norm(match.group(1))] = match.group(2)
    return pins


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_has_hashes_and_matches_its_inputs(lock):
    versions = locked(lock)
    assert len(versions) >= 5
    for source in LOCKS[lock]:
        for name, version in declared(source).items():
            assert versions.get(name) == version, f"{lock} is stale for {name}=={version}: run `make lock`"


def test_the_locks_agree_with_each_other():
    dev = locked("requirements-dev.txt")
    for lock in ("requirements.txt", "policy/requirements.txt", "apps/requirements.txt"):
        for name, version in locked(lock).items():
            assert dev.get(name, version) == version, f"{lock} and requirements-dev.txt disagree on {name}"


def test_a_lock_without_hashes_is_caught(tmp_path, monkeypatch):
    bad = tmp_path / "requirements.txt"
    bad.write_text("#\n#\n#\n#\n#\n#\nredis==8.1.0\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="has no hash"):
        locked("requirements.txt")


def test_make_install_and_the_pulumi_toolchain_require_hashes():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes --no-deps -r requirements-dev.txt" in makefile
    assert "pip check" in makefile  # nothing is resolved at install, so the locked set is checked after it
    assert "--no-deps --no-build-isolation -e apps" in makefile
    # Pulumi's pip toolchain installs requirements.txt; hashes in it switch pip to hash-checking mode.
    assert "--hash=sha256:" in (ROOT / "requirements.txt").read_text()
    assert "\nmake test\n" in (ROOT / ".ci" / "run").read_text()  # make test installs first


def test_the_image_install_succeeds_from_its_lock_with_hashes_required(tmp_path):
    """What apps/Dockerfile runs, in a clean venv: the lock alone (hashes checked), then the app, no resolving."""
    source = tmp_path / "src"  # the image's build context (apps/.dockerignore keeps the rest out)
    source.mkdir()
    shutil.copy(ROOT / "apps" / "pyproject.toml", source)
    shutil.copytree(ROOT / "apps" / "iot", source / "iot", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for args in (["--require-hashes", "--no-deps", "-r", str(ROOT / "apps" / "requirements.txt")],
                 ["--no-deps", "--no-build-isolation", str(source)]):
        result = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    check = subprocess.run([str(venv / "bin" / "pip"), "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout
    helped = subprocess.run([str(venv / "bin" / "iot"), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "tracker" in helped.stdout
