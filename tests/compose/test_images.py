"""The images the playground and the stacks run: apps/Dockerfile and the two static sites."""

from __future__ import annotations

import importlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from iot.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "apps"
SITES = ("marketing", "docs")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_apps_image_is_multi_stage_slim_non_root_with_iot_entrypoint_and_healthcheck() -> None:
    steps = instructions(APPS / "Dockerfile")
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    # Pinned by digest: a rebuild of the same commit starts from the same bytes (Dependabot bumps it).
    assert all(re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", f.split()[0]) for f in froms)
    assert any(keyword == "COPY" and args.startswith("--from=") for keyword, args in steps)
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (entrypoint,) = [json.loads(args) for keyword, args in steps if keyword == "ENTRYPOINT"]
    assert entrypoint == ["iot"]
    (healthcheck,) = [args for keyword, args in steps if keyword == "HEALTHCHECK"]
    assert "/health" in healthcheck and "APP_PORT" in healthcheck


def test_apps_image_installs_only_hash_locked_packages() -> None:
    """The image gets exactly the locked dependencies (hashes checked), then the app without resolving again."""
    runs = [args for keyword, args in instructions(APPS / "Dockerfile") if keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert any("--require-hashes" in r and "-r requirements.txt" in r for r in installs)
    assert all("--require-hashes" in r or "--no-deps" in r for r in installs), installs
    lock = (APPS / "requirements.txt").read_text()
    for dependency in _project_dependencies():
        name, _, version = dependency.partition("==")
        assert re.search(rf"^{re.escape(name.split('[')[0].lower())}=={re.escape(version)} \\$", lock, re.M), dependency


def _project_dependencies() -> list[str]:
    import tomllib

    return tomllib.loads((APPS / "pyproject.toml").read_text())["project"]["dependencies"]


def test_apps_build_context_keeps_only_the_package() -> None:
    ignored = (APPS / ".dockerignore").read_text().split()
    for entry in ("marketing", "docs", "**/__pycache__", "*.egg-info"):
        assert entry in ignored


def test_every_iot_subcommand_the_playground_runs_exists() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r'command: \["([a-z]+)"', compose))
    assert used >= {"migrate", "tracker", "worker", "monitor", "simulate", "dashboard"}
    assert used <= set(COMMANDS)
    assert importlib.import_module("iot.dashboard.seed").main


@pytest.mark.parametrize("site", SITES)
def test_static_site_image_is_small_pinned_unprivileged_with_healthcheck(site: str) -> None:
    steps = instructions(APPS / site / "Dockerfile")
    (base,) = [args for keyword, args in steps if keyword == "FROM"]
    assert re.fullmatch(r"nginxinc/nginx-unprivileged:\d+\.\d+(\.\d+)?-alpine@sha256:[0-9a-f]{64}", base)
    assert [args for keyword, args in steps if keyword == "USER"][-1] not in ("root", "0")
    assert any(keyword == "HEALTHCHECK" and "/health" in args for keyword, args in steps)
    template = (APPS / site / "default.conf.template").read_text()
    assert "listen 8080;" in template and "location = /health" in template


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, name, value))
            if name == "id" and value:
                self.ids.add(value)


@pytest.mark.parametrize("site", SITES)
def test_static_site_links_resolve_and_nothing_loads_from_elsewhere(site: str) -> None:
    root = APPS / site / "site"
    template = (APPS / site / "default.conf.template").read_text()
    server_paths = set(re.findall(r"location = (/\S*)", template))
    pages = sorted(root.glob("*.html"))
    assert pages
    for page in pages:
        parser = Links()
        parser.feed(page.read_text())
        for tag, attribute, value in parser.refs:
            assert not re.match(r"(https?:)?//", value), f"{page.name}: {tag} {attribute}={value} leaves the site"
            path, _, fragment = value.partition("#")
            if not path:
                assert fragment in parser.ids, f"{page.name}: no anchor #{fragment}"
                continue
            assert path in server_paths or (root / path.lstrip("/")).is_file() or path == "/", \
                f"{page.name}: {value} resolves to nothing"


def test_docs_explain_device_ingest_with_curl_and_link_the_openapi() -> None:
    ingest = (APPS / "docs" / "site" / "ingest.html").read_text()
    for needle in ("POST /v1/metrics", "POST /v1/heartbeat", "curl -X POST https://collect.&lt;domain&gt;/v1/metrics",
                   "curl -X POST https://collect.&lt;domain&gt;/v1/heartbeat", "Authorization: Bearer"):
        assert needle in ingest
    template = (APPS / "docs" / "default.conf.template").read_text()
    assert "return 302 ${PUBLIC_SCHEME}://tracker.${DOMAIN}/docs;" in template
    assert "https://tracker.&lt;domain&gt;/docs" in (APPS / "docs" / "site" / "index.html").read_text()
