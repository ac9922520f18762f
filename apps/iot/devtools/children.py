"""The demo's child processes: started with a log file each, watched, and stopped in reverse order.

Each child gets its own session, so a Ctrl-C at the terminal reaches only `iot demo`, which then stops
the children in the reverse order of their start (the dashboard before the database it reads). On Linux
each child is also told to receive SIGTERM if `iot demo` itself dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec function that asks Linux for SIGTERM when our process dies (None elsewhere)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def set_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_signal


class StartError(RuntimeError):
    """A child did not come up; the message names it and quotes the end of its log."""


@dataclass
class Child:
    name: str
    command: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Children:
    log_dir: Path
    env: dict[str, str]
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, command: list[str], **env: str | int) -> Child:
        child = Child(name, command, self.log_dir / f"{name}.log")
        self.started.append(child)  # before Popen: whatever happens next, stop_all() knows it
        environment = {**self.env, **{key: str(value) for key, value in env.items()}}
        with child.log_path.open("ab") as log:
            child.proc = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=_parent_death_signal())
        return child

    def run(self, name: str, command: list[str], timeout: float, **env: str | int) -> None:
        """Run a one-shot command to completion; StartError when it fails."""
        child = self.start(name, command, **env)
        try:
            code = child.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            child.stop()
            raise StartError(f"{name} did not finish within {timeout:.0f} s:\n{child.tail()}") from None
        finally:
            if child.exit_code() is not None:
                self.forget(child)
        if code != 0:
            raise StartError(f"{name} failed (exit {code}):\n{child.tail()}")

    def first_dead(self) -> Child | None:
        """A long-running child that exited (one-shot children are removed once done)."""
        return next((c for c in self.started if c.exit_code() is not None), None)

    def forget(self, child: Child) -> None:
        self.started.remove(child)

    def stop_all(self) -> None:
        """Terminate every child, newest first (each gets its own grace period), then forget them."""
        for child in reversed(self.started):
            with contextlib.suppress(OSError):
                child.stop()
        self.started.clear()


def wait_http(child: Child, url: str, timeout: float = 60.0) -> None:
    """Return once `url` answers 200; StartError when the child exits first or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = child.exit_code()
        if code is not None:
            raise StartError(f"{child.name} exited with {code} before {url} answered:\n{child.tail()}")
        with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise StartError(f"{child.name} did not answer {url} within {timeout:.0f} s:\n{child.tail()}")
