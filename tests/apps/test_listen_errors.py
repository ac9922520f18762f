"""A worker or monitor whose HTTP port is taken stops at once with one line naming the variable to change."""

from __future__ import annotations

import socket
import subprocess

import pytest
from iot_processes import IOT, iot_env


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _run(args: list[str], **env: object) -> subprocess.CompletedProcess:
    return subprocess.run([IOT, *args], env=iot_env(APP_HOST="127.0.0.1", LOG_LEVEL="warning", **env),
                          capture_output=True, text=True, timeout=60)


def test_worker_names_app_port(database_url, redis_url, taken_port) -> None:
    done = _run(["worker"], DATABASE_URL=database_url, REDIS_URL=redis_url, APP_PORT=taken_port)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        f"worker cannot start: cannot listen on APP_HOST 127.0.0.1 APP_PORT {taken_port}: "
        "Address already in use; choose a free port")


@pytest.mark.parametrize("taken", ["APP_PORT", "METRICS_PORT"])
def test_monitor_names_the_port_variable_and_frees_the_other(redis_url, taken_port, taken: str) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        free = other.getsockname()[1]
    # APP_PORT taken: the app listener is the first, nothing else started. METRICS_PORT taken: the app
    # listener on `free` had started and must be closed again.
    ports = {"APP_PORT": taken_port, "METRICS_PORT": free} if taken == "APP_PORT" else \
        {"APP_PORT": free, "METRICS_PORT": taken_port}
    done = _run(["monitor"], REDIS_URL=redis_url, REGION="helsinki", **ports)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        f"monitor cannot start: cannot listen on APP_HOST 127.0.0.1 {taken} {taken_port}: "
        "Address already in use; choose a free port")
    with socket.socket() as again:  # the listener that did start was closed again
        again.bind(("127.0.0.1", free))
