"""`make demo` as a newcomer runs it: the whole system comes up from source, the dashboard signs in and shows
live devices in Chromium, and Ctrl-C leaves no process, port or temp dir behind, also when a child dies or
the start-up is interrupted half way."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
DEVICES, TCP_DEVICES, FAILING = 12, 2, 2
DEMO_ARGS = f"--devices {DEVICES} --tcp-devices {TCP_DEVICES} --failing {FAILING}"
READY = "Ctrl-C stops everything"


@dataclass
class RunningDemo:
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"the demo exited with {self.proc.returncode} before {text!r}:\n{self.output}")
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output}")

    def wait_ready(self) -> None:
        self.wait_for_line(READY, 240)
        self.wait_for_line("temp dir", 10)

    def value(self, label: str) -> str:
        match = re.search(rf"^\s+{label}\s+(\S+)", self.output, re.M)
        assert match, f"no {label!r} line in:\n{self.output}"
        return match.group(1)

    def ports(self) -> set[int]:
        ports = {int(p) for p in re.findall(r"(?:127\.0\.0\.1|localhost):(\d+)", self.output)}
        first, last = re.search(r"devices on 127\.0\.0\.1:(\d+)-(\d+)", self.output).groups()
        return ports | set(range(int(first), int(last) + 1))

    def interrupt(self) -> None:
        """Ctrl-C at the terminal: SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait_stopped(self, timeout: float = 90) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_demo(command: list[str]) -> RunningDemo:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MAKEFLAGS")}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, as in a terminal
    return RunningDemo(proc)


@pytest.fixture
def demo_factory() -> Iterator:
    started: list[RunningDemo] = []

    def start(command: list[str]) -> RunningDemo:
        demo = start_demo(command)
        started.append(demo)
        return demo

    yield start
    for demo in started:  # a failed test must not leave a demo running either
        if demo.proc.poll() is None:
            demo.interrupt()
            try:
                demo.wait_stopped(60)
            except subprocess.TimeoutExpired:
                demo.kill()


def iot_demo(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "iot"), "demo", *DEMO_ARGS.split(), *args]


def leftovers(root: str) -> list[str]:
    """Processes that carry this demo's marker in their environment or its temp dir on their command line."""
    marker = f"IOT_DEMO_DIR={root}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in environ or root.encode() in cmdline:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {command}")
    return found


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_nothing_left(demo: RunningDemo, root: str, ports: set[int]) -> None:
    assert not Path(root).exists(), f"temp dir {root} left behind"
    assert leftovers(root) == [], "processes left behind"
    with pytest.raises(ProcessLookupError):
        os.killpg(demo.proc.pid, 0)  # nothing left in its process group either
    held = sorted(port for port in ports if listening(port))
    owners = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout if held else ""
    assert not held, f"ports still listening after the demo stopped: {held}\n{owners}"


def test_make_demo_signs_in_shows_live_devices_and_ctrl_c_leaves_nothing(demo_factory) -> None:
    demo = demo_factory(["make", "--no-print-directory", "demo", f"DEMO_ARGS={DEMO_ARGS}"])
    demo.wait_ready()
    dashboard, key, root = demo.value("dashboard"), demo.value("demo key"), demo.value("temp dir")
    marketing = demo.value("marketing")
    assert re.fullmatch(r"http://demo\.localhost:\d+/", dashboard), dashboard
    assert Path(root).is_dir() and leftovers(root), "the demo's processes carry its marker"
    ports = demo.ports()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(dashboard)
        expect(page).to_have_url(f"{dashboard}signin?next=%2F")
        page.fill("#api_key", key)
        page.click("button[type=submit]")
        expect(page).to_have_url(dashboard)
        # Live devices: every simulated device up, the ones at closed ports down, both regions probing.
        expect(page.locator('[data-count="up"] .n')).to_have_text(str(DEVICES + TCP_DEVICES), timeout=90_000)
        expect(page.locator('[data-count="down"] .n')).to_have_text(str(FAILING), timeout=90_000)
        expect(page.locator("#regions")).to_contain_text("frankfurt")
        expect(page.locator("#regions")).to_contain_text("amsterdam")
        # The unknown-tenant page leads to the marketing site, not back to itself.
        unknown = dashboard.replace("demo.localhost", "nosuch.localhost")
        page.goto(unknown)
        expect(page.locator("h1")).to_have_text("Not found")
        page.click("text=Go to the start page")
        expect(page).to_have_url(marketing)
        expect(page).to_have_title(re.compile("know when your devices fail"))
        browser.close()

    demo.interrupt()
    started = time.monotonic()
    demo.wait_stopped()
    print(f"stopped {time.monotonic() - started:.1f}s after Ctrl-C")
    assert "stopped: no demo process, port or temp dir is left." in demo.output
    assert_nothing_left(demo, root, ports)


def test_a_child_that_dies_stops_the_demo_and_leaves_nothing(demo_factory) -> None:
    demo = demo_factory(iot_demo())
    demo.wait_ready()
    root, ports = demo.value("temp dir"), demo.ports()
    (worker,) = [line.split(":")[0] for line in leftovers(root) if "-m iot worker" in line]
    os.kill(int(worker), signal.SIGKILL)
    assert demo.wait_stopped() == 1
    assert re.search(r"worker exited with -9; stopping the demo", demo.output), demo.output
    assert_nothing_left(demo, root, ports)


def test_ctrl_c_during_start_up_leaves_nothing(demo_factory) -> None:
    demo = demo_factory(iot_demo())
    demo.wait_for_line("starting the simulator", 120)  # Redis, PostgreSQL and migrate done; services starting
    root = re.search(r"starting Redis and PostgreSQL in (\S+) \.\.\.", demo.output).group(1)
    demo.interrupt()
    assert demo.wait_stopped() == 0
    assert READY not in demo.output
    assert_nothing_left(demo, root, set())


def test_a_failed_start_up_stops_what_was_started_and_says_why(demo_factory) -> None:
    """The dashboard (started last) cannot listen: everything started before it is stopped again."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        demo = demo_factory(iot_demo("--port", str(taken.getsockname()[1])))
        code = demo.wait_stopped(240)
    assert code == 1, demo.output
    assert "the demo could not start: dashboard exited with" in demo.output, demo.output
    assert "address already in use" in demo.output
    root = re.search(r"starting Redis and PostgreSQL in (\S+) \.\.\.", demo.output).group(1)
    assert_nothing_left(demo, root, set())
