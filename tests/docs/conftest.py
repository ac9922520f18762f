"""A `make demo`-style system for the documentation's snippets: `iot demo` itself, in its own process group,
and the variables a reader sets from its banner (docs/api.md, "Following along with make demo")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from doc_snippets import BANNER_VALUES, ROOT, shell_environment

# Small, so it starts quickly on a loaded machine; device 3 exists (the simulator example in docs/api.md).
DEMO_ARGS = ["--devices", "6", "--tcp-devices", "1", "--failing", "1", "--interval", "5"]
BANNER_END = re.compile(r"^\s+temp dir\s+\S+", re.M)  # the banner's last line: everything is up


def wait_for_banner(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while not BANNER_END.search(text := log.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"`iot demo` did not get ready (exit {proc.poll()}):\n{text}")
        time.sleep(0.2)
    return text


def banner_values(banner: str) -> dict[str, str]:
    values = {}
    for name, pattern in BANNER_VALUES.items():
        match = re.search(pattern, banner, re.M)
        assert match, f"the demo's banner has no value for ${name} ({pattern}):\n{banner}"
        values[name] = match.group(1)
    return values


def interrupt(proc: subprocess.Popen) -> None:
    """Ctrl-C, as a reader ends it (the whole process group), then make sure it is gone."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="session")
def demo_banner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("docs-demo") / "demo.out"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MAKEFLAGS")}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "iot", "demo", *DEMO_ARGS], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield wait_for_banner(proc, log)
    finally:
        interrupt(proc)


@pytest.fixture(scope="session")
def reader_env(demo_banner: str) -> dict[str, str]:
    """The environment of a reader's shell after following the docs' set-up block."""
    return shell_environment(banner_values(demo_banner))
