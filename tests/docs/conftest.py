"""A `make demo`-style system for the documentation's snippets: `iot demo` itself, in its own process group,
and the variables a reader sets from its banner (docs/api.md, "Following along with make demo")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from doc_snippets import BANNER_VALUES, ROOT, shell_environment

# Small, so it starts quickly on a loaded machine; device 3 exists (the simulator example in docs/api.md).
DEMO_ARGS = ["--devices", "6", "--tcp-devices", "1", "--failing", "1", "--interval", "5"]
READY = "Ctrl-C stops everything"
@dataclass
class RunningDemo:
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not (READY in self.output and any(line.strip().startswith("temp dir") for line in self.lines)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"`iot demo` did not get ready (exit {self.proc.poll()}):\n{self.output}")
            time.sleep(0.2)

    def banner_values(self) -> dict[str, str]:
        values = {}
        for name, pattern in BANNER_VALUES.items():
            match = re.search(pattern, self.output, re.M)
            assert match, f"the demo's banner has no value for ${name} ({pattern}):\n{self.output}"
            values[name] = match.group(1)
        return values

    def stop(self) -> None:
        """Ctrl-C, as a reader ends it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture(scope="session")
def running_demo() -> Iterator[RunningDemo]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MAKEFLAGS")}
    proc = subprocess.Popen([sys.executable, "-m", "iot", "demo", *DEMO_ARGS], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    demo = RunningDemo(proc)
    try:
        demo.wait_ready()
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="session")
def reader_env(running_demo: RunningDemo) -> dict[str, str]:
    """The environment of a reader's shell after following the docs' set-up block."""
    return shell_environment(running_demo.banner_values())
