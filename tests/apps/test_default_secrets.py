"""The tracker and the dashboard refuse the secrets anyone can read in this repository, unless the
development flag ALLOW_DEFAULT_SECRETS says this is a laptop."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest
from iot_processes import IOT, Proc, wait_http_ok
from servers import free_port

from iot.published_secrets import PUBLISHED
from iot.settings import CommonSettings, DashboardSettings, SecretsKeySettings

ROOT = Path(__file__).resolve().parents[2]
OWN_SESSION_SECRET = "secret-test-session-0123456789abcdef"
OWN_ADMIN_TOKEN = "secret-test-admin-0123456789abcdef"


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def run_refused(command: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_", "ADMIN_", "ALLOW_", "APP_"))}
    full.update(env, APP_HOST="127.0.0.1", APP_PORT=str(free_port()))
    return subprocess.run([IOT, command], env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("command", "env", "named"), [
    ("dashboard", {}, "SESSION_SECRET"),  # the built-in default
    ("dashboard", {"SESSION_SECRET": env_example()["SESSION_SECRET"]}, "SESSION_SECRET"),
    ("tracker", {"ADMIN_TOKEN": env_example()["ADMIN_TOKEN"]}, "ADMIN_TOKEN"),
    ("tracker", {"ADMIN_TOKEN": OWN_ADMIN_TOKEN, "SECRETS_KEY": env_example()["SECRETS_KEY"]}, "SECRETS_KEY"),
    ("dashboard", {"SESSION_SECRET": OWN_SESSION_SECRET,
                   "SECRETS_KEY": SecretsKeySettings.model_fields["secrets_key"].default.get_secret_value()},
     "SECRETS_KEY"),
    ("tracker", {"ADMIN_TOKEN": OWN_ADMIN_TOKEN,
                 "DATABASE_URL": f"postgresql://iot:{env_example()['POSTGRES_PASSWORD']}@127.0.0.1:9/iot"},
     "the password in DATABASE_URL"),
])
def test_published_secrets_are_refused_with_the_setting_and_the_fix(command: str, env: dict, named: str,
                                                                    redis_url: str, database_url: str) -> None:
    done = run_refused(command, **{"DATABASE_URL": database_url, "REDIS_URL": redis_url, **env})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to start" in done.stdout and named in done.stdout
    assert "ALLOW_DEFAULT_SECRETS=true" in done.stdout and "openssl rand" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("command", ["dashboard", "tracker"])
def test_the_development_flag_accepts_them_with_a_warning(command: str, redis_url: str, database_url: str,
                                                          tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_", "ADMIN_", "APP_"))}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, APP_HOST="127.0.0.1", APP_PORT=str(port),
               ALLOW_DEFAULT_SECRETS="true", ADMIN_TOKEN=env_example()["ADMIN_TOKEN"])
    proc = Proc(command, [command], env, tmp_path / "out.log").start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", proc)
        assert "published secrets (ALLOW_DEFAULT_SECRETS): development only" in proc.log()
    finally:
        proc.stop()


def test_own_secrets_need_no_flag(redis_url: str, database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_", "ADMIN_", "ALLOW_", "APP_"))}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, APP_HOST="127.0.0.1", APP_PORT=str(port),
               SESSION_SECRET=OWN_SESSION_SECRET)
    proc = Proc("dashboard", ["dashboard"], env, tmp_path / "dashboard.log").start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", proc)
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "ok"
    finally:
        proc.stop()


def test_every_published_value_is_on_the_refused_list() -> None:
    """Duplicated facts: the defaults in settings.py, .env.example and docker-compose.yml."""
    example = env_example()
    assert example["SESSION_SECRET"] in PUBLISHED["SESSION_SECRET"]
    assert DashboardSettings.model_fields["session_secret"].default.get_secret_value() in PUBLISHED["SESSION_SECRET"]
    assert example["ADMIN_TOKEN"] in PUBLISHED["ADMIN_TOKEN"]
    assert example["SECRETS_KEY"] in PUBLISHED["SECRETS_KEY"]
    assert example["POSTGRES_PASSWORD"] in PUBLISHED["DATABASE_URL"]
    default_url = CommonSettings.model_fields["database_url"].default.get_secret_value()
    assert re.match(r"postgresql://iot:(?P<pw>[^@]+)@", default_url)["pw"] in PUBLISHED["DATABASE_URL"]
    compose = (ROOT / "docker-compose.yml").read_text()
    for name, published in (("SESSION_SECRET", "SESSION_SECRET"), ("ADMIN_TOKEN", "ADMIN_TOKEN"),
                            ("SECRETS_KEY", "SECRETS_KEY"), ("POSTGRES_PASSWORD", "DATABASE_URL")):
        for default in re.findall(rf"\$\{{{name}:-([^}}]+)\}}", compose):
            assert default in PUBLISHED[published], (name, default)
