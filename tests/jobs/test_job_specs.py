"""The Nomad job specs in jobs/, parsed with python-hcl2 and checked against what Pulumi passes them.

No Nomad or Traefik binary runs here, so these tests read the specs structurally: variables,
router rules (Traefik v3 syntax, the DESIGN §2 host table), health checks, update strategies,
resources, and where secrets come from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from jobs_support import FAKE_SECRETS, stack_config, stack_vars

from cloud_init.cluster import CONSUL_HTTPS_PORT
from components.edge_layout import INTERNAL_HOSTS
from components.job_spec import JobSpec, SpecError, load_job_spec
from components.job_vars import APP_JOBS, JOB_NAMES, JOBS_DIR, SECRET_ITEMS, STATIC_JOBS
from deploy.mocks import CLOUDFLARE_IPV4, CLOUDFLARE_IPV6

SERVICE_JOBS = APP_JOBS + STATIC_JOBS
MATCHER = r"(Host|HostRegexp)\(`([^`]+)`\)"
RULE_RE = re.compile(rf"^{MATCHER}(?: \|\| {MATCHER})*$")


def tags(spec: JobSpec, values: dict[str, str]) -> list[str]:
    return [spec.evaluate(tag, values) for service in spec.services() for tag in service.get("tags", [])]


def routers(spec: JobSpec, values: dict[str, str]) -> dict[str, dict[str, str]]:
    """router name -> {setting: value} from the service's traefik.http.routers.* tags."""
    out: dict[str, dict[str, str]] = {}
    for tag in tags(spec, values):
        match = re.match(r"^traefik\.http\.routers\.([^.]+)\.([^=]+)=(.*)$", tag)
        if match:
            out.setdefault(match.group(1), {})[match.group(2)] = match.group(3)
    return out


def routed_hosts(rule: str, domain: str) -> set[str]:
    """Hostnames a v3 rule routes; a tenant HostRegexp counts as `*.<domain>` once proven to mean it."""
    assert RULE_RE.match(rule), f"not Traefik v3 matcher syntax: {rule!r}"
    hosts = set()
    for kind, value in re.findall(MATCHER, rule):
        if kind == "Host":
            assert "{" not in value and "," not in value, f"v2-style Host matcher: {rule!r}"
            hosts.add(value)
        else:
            pattern = re.compile(value)
            assert value.startswith("^") and value.endswith("$"), f"unanchored HostRegexp: {value!r}"
            assert pattern.match(f"acme.{domain}") and pattern.match(f"tenant-42.{domain}")
            assert not pattern.match(domain), "the tenant regexp must not match the apex"
            assert not pattern.match(f"a.b.{domain}"), "tenants are exactly one label deep"
            assert not pattern.match(f"acme.{domain.replace('.', 'x')}"), "dots in the domain must be escaped"
            assert not pattern.match(f"Acme.{domain}"), "tenant slugs are lowercase"
            hosts.add(f"*.{domain}")
    return hosts


def test_every_job_file_parses_and_is_named_after_its_file(specs):
    assert sorted(p.name for p in JOBS_DIR.glob("*.nomad.hcl")) == sorted(f"{j}.nomad.hcl" for j in JOB_NAMES)
    for job, spec in specs.items():
        assert spec.job_name == job


def test_vars_passed_are_declared_and_every_required_var_is_passed(specs, all_vars):
    for job, spec in specs.items():
        passed = set(all_vars[job])
        assert passed <= set(spec.variables), (
            f"{job}: passed but not declared: {passed - set(spec.variables)}"
        )
        assert spec.required_variables <= passed, (
            f"{job}: declared without default, not passed: {spec.required_variables - passed}"
        )
        assert all(isinstance(v, str) for v in all_vars[job].values()), "HCL2 vars are strings"


def test_job_inputs_are_variables_not_literals(specs, all_vars, stack):
    config = stack_config(stack)
    for job in SERVICE_JOBS:
        spec = specs[job]
        values = all_vars[job]
        ((_, group),) = spec.groups()
        assert group["count"] == "${var.count}"
        ((_, task),) = spec.tasks()
        assert task["resources"][0] == {"cpu": "${var.cpu}", "memory": "${var.memory}", "__is_block__": True}
        assert spec.evaluate(task["config"][0]["image"], values) == config.images.ref(
            "app" if job in APP_JOBS else job
        )
        assert spec.evaluate(spec.job["datacenters"], values) == list(dict.fromkeys(config.cluster.locations))
        assert values["count"] == str(config.services[job].count)


def test_router_rules_are_v3_and_route_exactly_the_design_hostnames(specs, all_vars, stack):
    domain = stack_config(stack).domain
    routed: dict[str, str] = {}
    for job in SERVICE_JOBS:
        for settings in routers(specs[job], all_vars[job]).values():
            for host in routed_hosts(settings["rule"], domain):
                assert host not in routed, f"{host} routed by both {routed[host]} and {job}"
                routed[host] = job
    # DESIGN §2: the seed's routing table, kept exactly (monitor hosts are DNS-only, not Traefik).
    assert routed == {
        domain: "marketing",
        f"www.{domain}": "marketing",
        f"docs.{domain}": "docs",
        f"tracker.{domain}": "tracker",
        f"collect.{domain}": "tracker",
        f"worker.{domain}": "worker",
        f"*.{domain}": "dashboard",
    }
    for monitor in stack_config(stack).monitor_names:
        assert f"{monitor}.{domain}" not in routed


def test_tenant_wildcard_has_the_lowest_priority(specs, all_vars):
    explicit_priorities = []
    for job in SERVICE_JOBS:
        for settings in routers(specs[job], all_vars[job]).values():
            # Traefik's default priority is the rule's length.
            priority = int(settings.get("priority", len(settings["rule"])))
            if "HostRegexp" in settings["rule"]:
                tenant_priority = priority
            else:
                explicit_priorities.append(priority)
    assert tenant_priority == 1
    assert min(explicit_priorities) > tenant_priority


def test_routers_are_https_only_and_opted_in(specs, all_vars):
    for job in SERVICE_JOBS:
        job_tags = tags(specs[job], all_vars[job])
        assert "traefik.enable=true" in job_tags, f"{job}: Consul Catalog runs with exposedByDefault=false"
        for name, settings in routers(specs[job], all_vars[job]).items():
            if name in INTERNAL_HOSTS:  # issue 10: never public, Traefik's internal entrypoint only
                assert settings["entrypoints"] == "internal" and "tls" not in settings, f"{job}/{name}"
                continue
            assert settings["entrypoints"] == "websecure", f"{job}/{name}"
            assert settings["tls"] == "true", f"{job}/{name}"


def test_every_router_caps_request_bodies_with_a_buffering_middleware(specs, all_vars):
    """Traefik reads a body in full (up to the cap) before a container sees it; 413 above the cap."""
    for job in SERVICE_JOBS:
        job_tags = tags(specs[job], all_vars[job])
        caps = {}
        for tag in job_tags:
            match = re.match(r"^traefik\.http\.middlewares\.([^.]+)\.buffering\.maxRequestBodyBytes=(\d+)$", tag)
            if match:
                caps[match.group(1)] = int(match.group(2))
        for name, settings in routers(specs[job], all_vars[job]).items():
            chain = settings.get("middlewares", "").split(",")
            attached = [caps[m] for m in chain if m in caps]
            assert len(attached) == 1, f"{job}/{name}: attach exactly one buffering middleware"
            assert 0 < attached[0] <= 4 * 1024 * 1024, f"{job}/{name}: cap {attached[0]}"
            if job in ("tracker", "dashboard"):
                # The app enforces the same cap for requests that reach it without Traefik.
                ((_, task),) = specs[job].tasks()
                env = task["env"][0]
                assert int(specs[job].evaluate(env["MAX_REQUEST_BODY_BYTES"], all_vars[job])) == attached[0], job


def test_every_service_has_an_http_health_check(specs):
    for job, spec in specs.items():
        services = list(spec.services())
        assert services, f"{job} registers no Consul service"
        for service in services:
            assert service["provider"] == '"consul"'
            (check,) = service["check"]
            expected = '"/ping"' if job == "traefik" else '"/health"'
            assert (check["type"], check["path"]) == ('"http"', expected), job
            assert check["interval"] and check["timeout"]


def test_service_jobs_roll_out_on_health_and_revert(specs):
    for job in SERVICE_JOBS:
        (update,) = specs[job].job["update"]
        assert update["health_check"] == '"checks"'
        assert update["auto_revert"] is True
        assert update["max_parallel"] == 1
        if update.get("canary", 0) > 0:
            assert update["auto_promote"] is True, f"{job}: a canary nobody promotes blocks every deploy"
    (traefik_update,) = specs["traefik"].job["update"]
    assert traefik_update["max_parallel"] == 1 and traefik_update["health_check"] == '"checks"'


def test_service_jobs_run_docker_in_bridge_networks(specs, all_vars):
    for job in SERVICE_JOBS:
        spec = specs[job]
        ((_, group),) = spec.groups()
        (network,) = group["network"]
        assert network["mode"] == '"bridge"'
        ((_, task),) = spec.tasks()
        assert task["driver"] == '"docker"'
        if job in APP_JOBS:
            config = task["config"][0]
            assert config["entrypoint"] == ['"iot"'] and config["args"] == [f'"{job}"'], f"`iot {job}`"
            env = task["env"][0]
            assert spec.evaluate(env["MONITOR_NAMES"], all_vars[job]) == all_vars[job]["monitor_names"]
            assert str(spec.evaluate(env["APP_PORT"], all_vars[job])) == "8000", (
                "the port /health is checked on"
            )


def _nomad_var_keys(data: str, job: str) -> set[str]:
    blocks = re.findall(r'\{\{ with nomadVar ["`]([^"`]+)["`] \}\}(.*?)\{\{ end \}\}', data, re.S)
    keys = set()
    for path, body in blocks:
        assert path == f"nomad/jobs/{job}", f"{job} reads another job's Variable {path}"
        keys |= set(re.findall(r"\{\{\s*\.(\w+)", body))  # `{{ .KEY }}` or a pipeline `{{ .KEY | toJSON }}`
    return keys


def test_secrets_reach_tasks_only_through_nomad_variable_templates(specs, all_vars):
    for job, spec in specs.items():
        read = set()
        for template in spec.templates():
            data = spec.evaluate(template["data"], all_vars[job])
            read |= _nomad_var_keys(data, job)
            if "nomadVar" in data:
                assert spec.evaluate(template["destination"], {}).startswith("secrets/"), (
                    f"{job}: rendered secrets belong in the task's secrets/ dir"
                )
        assert read == set(SECRET_ITEMS.get(job, ())), f"{job} reads {read}"
        for _, task in spec.tasks():
            env = task.get("env", [{}])[0]
            assert not set(env) & {"DATABASE_URL", "REDIS_URL", "ADMIN_TOKEN"}, f"{job}: secret in plain env"
        app_env = [t for t in spec.templates() if t.get("env") is True]
        if job in APP_JOBS:
            assert len(app_env) == 1, f"{job}: secrets come in as one env file"


def test_no_secret_value_appears_in_specs_or_vars(stack):
    texts = [p.read_text() for p in JOBS_DIR.glob("*.nomad.hcl")]
    texts.append(json.dumps(stack_vars(stack)))
    for secret in FAKE_SECRETS.values():
        password = secret.split(":")[2].split("@")[0]
        for text in texts:
            assert secret not in text and password not in text


def test_traefik_is_a_pinned_v3_system_job_on_the_host_network(specs, all_vars, stack):
    spec, values = specs["traefik"], all_vars["traefik"]
    assert spec.job["type"] == '"system"'
    ((_, group),) = spec.groups()
    assert group["network"][0]["mode"] == '"host"'
    ((_, task),) = spec.tasks()
    image = spec.evaluate(task["config"][0]["image"], values)
    assert image == f"traefik:{stack_config(stack).versions.traefik}"
    assert re.fullmatch(r"traefik:v3\.\d+\.\d+(@sha256:[0-9a-f]{64})?", image)
    if stack == "prod":  # protected: the exact image bytes, not a tag that can be re-pointed
        assert "@sha256:" in image
    assert spec.evaluate(task["config"][0]["network_mode"], values) == "host"


def test_traefik_static_config_is_one_rendered_file(specs, all_vars):
    spec, values = specs["traefik"], all_vars["traefik"]
    ((_, task),) = spec.tasks()
    args = [spec.evaluate(a, values) for a in task["config"][0]["args"]]
    assert args == ["--configFile=/secrets/traefik.yml"], "no other flags: Traefik refuses mixed sources"
    assert "env" not in task
    rendered = {
        spec.evaluate(t["destination"], values): spec.evaluate(t["data"], values) for t in spec.templates()
    }
    static = yaml.safe_load(rendered["secrets/traefik.yml"])
    catalog = static["providers"]["consulCatalog"]
    assert catalog["exposedByDefault"] is False
    assert catalog["endpoint"]["address"] == f"127.0.0.1:{CONSUL_HTTPS_PORT}"
    assert catalog["endpoint"]["scheme"] == "https"
    entry = static["entryPoints"]
    assert (entry["web"]["address"], entry["websecure"]["address"], entry["ping"]["address"]) == (
        ":80",
        ":443",
        ":8082",
    )
    assert entry["web"]["http"]["redirections"]["entryPoint"]["to"] == "websecure"
    assert entry["web"]["http"]["redirections"]["entryPoint"]["scheme"] == "https"
    assert static["ping"] == {"entryPoint": "ping"}
    for name in ("web", "websecure"):
        assert entry[name]["forwardedHeaders"]["trustedIPs"] == sorted(CLOUDFLARE_IPV4) + sorted(
            CLOUDFLARE_IPV6
        )
    tls = yaml.safe_load(rendered["secrets/dynamic/tls.yml"])["tls"]
    assert tls["certificates"] == [{"certFile": "/secrets/origin.crt", "keyFile": "/secrets/origin.key"}]
    assert static["providers"]["file"]["directory"] == "/secrets/dynamic"


def test_a_broken_spec_is_reported_with_its_file_name(tmp_path: Path):
    broken = tmp_path / "broken.nomad.hcl"
    broken.write_text('job "x" {\n  group "g" {\n')
    with pytest.raises(SpecError, match="broken.nomad.hcl"):
        load_job_spec(broken)


def test_unsupported_expressions_are_refused_not_guessed(tmp_path: Path):
    spec_file = tmp_path / "x.nomad.hcl"
    spec_file.write_text(
        'variable "a" {\n  type = string\n}\njob "x" {\n  meta {\n    m = upper(var.a)\n  }\n}\n'
    )
    spec = load_job_spec(spec_file)
    with pytest.raises(SpecError, match="upper"):
        spec.evaluate(spec.job["meta"][0]["m"], {"a": "b"})


def test_prod_jobs_run_images_by_digest(specs):
    """Protected stacks deploy exactly what a commit built: every image a prod job runs is `@sha256:`."""
    values = stack_vars("prod")
    for job in SERVICE_JOBS:
        ((_, task),) = specs[job].tasks()
        image = specs[job].evaluate(task["config"][0]["image"], values[job])
        assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"{job} runs {image!r}"


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, f"not a Nomad duration: {duration!r}"
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


def test_routed_services_leave_traefik_before_they_stop(specs, all_vars):
    """On a deploy or drain Nomad deregisters the service from Consul, waits shutdown_delay, then
    stops the task. Traefik reads the Consul catalog every refreshInterval (15s unless set), so a
    shorter delay leaves it routing requests to a task that is already gone (502s for users)."""
    spec, values = specs["traefik"], all_vars["traefik"]
    rendered = {spec.evaluate(t["destination"], values): spec.evaluate(t["data"], values) for t in spec.templates()}
    catalog = yaml.safe_load(rendered["secrets/traefik.yml"])["providers"]["consulCatalog"]
    refresh = _seconds(catalog.get("refreshInterval", "15s"))
    for job in SERVICE_JOBS:
        ((_, group),) = specs[job].groups()
        assert "shutdown_delay" in group, f"{job}: no shutdown_delay"
        delay = _seconds(specs[job].evaluate(group["shutdown_delay"], all_vars[job]))
        assert delay >= refresh + 2, f"{job}: shutdown_delay {delay}s does not cover Traefik's {refresh}s refresh"
