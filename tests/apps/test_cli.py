"""The `iot` command as a newcomer meets it: help that touches no server, and one clear line (naming the
variable and the address, never the password) when PostgreSQL or Redis cannot be reached."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from iot_processes import IOT
from servers import PostgresServer, RedisServer, free_port

from iot.cli import COMMANDS

PASSWORD = "s3cret-pw-never-logged"


class SilentServer:
    """A TCP listener on loopback that accepts connections, counts them and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def clean_env(**values: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIM_", "APP_", "SEED_", "DEMO_", "DATABASE_", "REDIS_", "SESSION_", "ADMIN_"))}
    env.update({k: str(v) for k, v in values.items()})
    return env


def test_iot_help_lists_every_command_with_its_description() -> None:
    done = subprocess.run([IOT, "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    for name, (_module, _func, description) in COMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(description)}$", done.stdout, re.M), (name, done.stdout)
    assert "iot <command> --help" in done.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_help_without_touching_a_server(command: str, silent_server: SilentServer) -> None:
    # Both URLs lead to a listener that counts connections: help must not open one.
    env = clean_env(DATABASE_URL=f"postgresql://iot:{PASSWORD}@127.0.0.1:{silent_server.port}/iot",
                    REDIS_URL=f"redis://127.0.0.1:{silent_server.port}/0")
    started = time.monotonic()
    done = subprocess.run([IOT, command, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"usage: iot {command}"), done.stdout
    assert "options:" in done.stdout and "-h, --help" in done.stdout
    assert silent_server.accepted == [], f"`iot {command} --help` connected to a server"
    assert time.monotonic() - started < 30


def log_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


def lines_naming(path: Path, variable: str) -> list[str]:
    return [line for line in log_lines(path) if variable in line]


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout}s:\n{log.read_text()[-3000:]}")


# (command, the variable that points nowhere). The other variable points at a real server.
UNREACHABLE = [
    ("tracker", "DATABASE_URL"),
    ("tracker", "REDIS_URL"),
    ("dashboard", "DATABASE_URL"),
    ("worker", "DATABASE_URL"),
    ("worker", "REDIS_URL"),
    ("monitor", "REDIS_URL"),
    ("migrate", "DATABASE_URL"),
]


@pytest.mark.parametrize(("command", "variable"), UNREACHABLE)
def test_an_unreachable_server_gives_one_line_naming_the_variable_then_quiet_retries(
        command: str, variable: str, postgres_server, redis_url: str, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens here yet; a server is started on it later
    unreachable = {
        "DATABASE_URL": f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed}/postgres",
        "REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{closed}/0",
    }
    working = {"DATABASE_URL": postgres_server.url(), "REDIS_URL": redis_url}
    app_port = free_port()
    env = clean_env(**{**working, variable: unreachable[variable]}, APP_HOST="127.0.0.1", APP_PORT=app_port,
                    SESSION_SECRET="cli-test-session-secret-0123456789", ADMIN_TOKEN="cli-test-admin-token-0123456789")
    if variable == "REDIS_URL":
        env["REDIS_URL"] = f"redis://127.0.0.1:{closed}/0"  # our test Redis has no password
    log = tmp_path / f"{command}.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen([IOT, command], env=env, stdout=out, stderr=subprocess.STDOUT)
    server = None
    try:
        (line,) = wait_for(lambda: lines_naming(log, variable), 15, f"line naming {variable}", proc, log)
        elapsed = time.monotonic() - started
        assert f"127.0.0.1:{closed}" in line, line
        json.loads(line)  # one JSON log line, not a traceback
        text = log.read_text()
        assert PASSWORD not in text and "Traceback" not in text, text
        # Quiet: not one more line (about it or anything else) while it keeps retrying.
        before = len(log_lines(log))
        time.sleep(5)
        assert proc.poll() is None, log.read_text()
        assert len(log_lines(log)) == before, log.read_text()
        # Retrying: once the server answers, the service gets going without a restart.
        if variable == "REDIS_URL":
            server = RedisServer(port=closed).start()
        else:
            server = PostgresServer(port=closed).start()
        if command == "migrate":
            assert proc.wait(60) == 0, log.read_text()
        else:
            wait_for(lambda: _answers(f"http://127.0.0.1:{app_port}/health"), 60, "/health", proc, log)
        print(f"{command} named {variable} after {elapsed:.1f}s")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
        if server is not None:
            server.cleanup()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_servers_that_accept_but_never_answer_are_named_within_seconds(silent_server: SilentServer,
                                                                        tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"postgresql://iot:{PASSWORD}@127.0.0.1:{silent_server.port}/iot",
                    REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{silent_server.port}/0", APP_HOST="127.0.0.1",
                    APP_PORT=free_port(), ADMIN_TOKEN="cli-test-admin-token-0123456789")
    log = tmp_path / "tracker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([IOT, "tracker"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        for variable in ("DATABASE_URL", "REDIS_URL"):
            (line,) = wait_for(lambda v=variable: lines_naming(log, v), 20, f"line naming {variable}", proc, log)
            assert f"127.0.0.1:{silent_server.port}" in line
        assert PASSWORD not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(20)


def test_iot_env_marks_what_is_at_its_default_and_hides_passwords() -> None:
    env = clean_env(DATABASE_URL=f"postgresql://iot:{PASSWORD}@db.example:5432/iot", LOG_LEVEL="debug",
                    SESSION_SECRET="my-own-session-secret-0123456789")
    done = subprocess.run([IOT, "env"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = {line.split("=", 1)[0]: line for line in done.stdout.splitlines() if not line.startswith("#")}
    assert lines["DATABASE_URL"].startswith("DATABASE_URL=postgresql://iot:***@db.example:5432/iot  # set: ")
    assert lines["REDIS_URL"].startswith("REDIS_URL=redis://localhost:6379/0  # default: ")
    assert lines["LOG_LEVEL"].startswith("LOG_LEVEL=debug  # set: ")
    assert lines["APP_PORT"].startswith("APP_PORT=8000  # default: ")
    assert lines["SESSION_SECRET"].startswith("SESSION_SECRET=(secret)  # set: ")
    assert lines["DEMO_API_KEY"].startswith("DEMO_API_KEY=(published default: development only)  # default: ")
    assert lines["ALLOW_DEFAULT_SECRETS"].startswith("ALLOW_DEFAULT_SECRETS=false  # default: ")
    assert PASSWORD not in done.stdout and "my-own-session-secret" not in done.stdout


def test_a_database_that_refuses_us_stops_the_service_with_one_line(postgres_server, redis_url: str) -> None:
    """Waiting cannot fix a database that does not exist: say so at once, naming the setting."""
    url = postgres_server.url("no_such_database").replace("postgres@", f"postgres:{PASSWORD}@")
    env = clean_env(DATABASE_URL=url, REDIS_URL=redis_url, APP_HOST="127.0.0.1", APP_PORT=free_port(),
                    ADMIN_TOKEN="cli-test-admin-token-0123456789")
    done = subprocess.run([IOT, "tracker"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith(f"tracker cannot start: DATABASE_URL: PostgreSQL at 127.0.0.1:{postgres_server.port}")
    assert 'database "no_such_database" does not exist' in done.stderr and "fix DATABASE_URL" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr
