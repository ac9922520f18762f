"""Only our zone reaches the origins, and monitor/worker internals stay internal (issue 10).

Under Pulumi mocks, for the committed stacks: the owning stack turns on Authenticated Origin Pulls
before Traefik starts demanding the client certificate, monitor hostnames only admit `GET /health`
at the edge, and the worker has no public hostname at all.
"""

from __future__ import annotations

import re

import pytest

from deploy.mocks import committed_stack_config, run_program
from deploy.plan import run_plan

RECORD = "cloudflare:index/dnsRecord:DnsRecord"
LB = "cloudflare:index/loadBalancer:LoadBalancer"
RULESET = "cloudflare:index/ruleset:Ruleset"
ZONE_SETTING = "cloudflare:index/zoneSetting:ZoneSetting"
JOB = "nomad:index/job:Job"


@pytest.fixture(scope="module", params=["dev", "prod"])
def plan(request):
    return request.param, run_plan(request.param)


def zone_settings(resources) -> dict[str, str]:
    return {r.inputs["settingId"]: r.inputs["value"] for r in resources if r.type == ZONE_SETTING}


def ruleset(resources, phase: str) -> dict:
    (found,) = [r.inputs for r in resources if r.type == RULESET and r.inputs["phase"] == phase]
    return found


def published_names(resources) -> set[str]:
    return {r.inputs["name"] for r in resources if r.type in (RECORD, LB)}


def test_the_owning_stack_turns_on_origin_pulls_and_full_strict(plan):
    _, resources = plan
    settings = zone_settings(resources)
    assert settings["tls_client_auth"] == "on", "Authenticated Origin Pulls: Cloudflare presents its client cert"
    assert settings["ssl"] == "strict"


def test_traefik_waits_for_origin_pulls_before_it_demands_the_client_certificate(plan):
    _, resources = plan
    (aop,) = [r for r in resources if r.type == ZONE_SETTING and r.inputs["settingId"] == "tls_client_auth"]
    (traefik,) = [r for r in resources if r.type == JOB and 'job "traefik"' in r.inputs["jobspec"]]
    assert aop.urn in traefik.dependencies


def test_the_worker_has_no_public_hostname(plan):
    stack, resources = plan
    domain = committed_stack_config(stack).domain
    assert f"worker.{domain}" not in published_names(resources)
    assert f"tracker.{domain}" in published_names(resources), "the other fixed hosts stay public"


def test_monitor_hosts_admit_only_get_health_and_the_worker_host_nothing(plan):
    stack, resources = plan
    config = committed_stack_config(stack)
    rules = ruleset(resources, "http_request_firewall_custom")
    assert rules["kind"] == "zone" and rules["zoneId"] == config.cloudflare.zone_id
    by_description = {r["description"]: r for r in rules["rules"]}
    assert all(r["action"] == "block" and r["enabled"] for r in rules["rules"])
    monitor_rule = next(r for d, r in by_description.items() if "monitor" in d)
    hosts = set(re.findall(r'"([^"]+)"', monitor_rule["expression"].split(" and ")[0]))
    assert hosts == {f"{m}.{config.domain}" for m in config.monitor_names}
    assert 'http.request.uri.path eq "/health"' in monitor_rule["expression"]
    assert 'http.request.method in {"GET" "HEAD"}' in monitor_rule["expression"]
    assert monitor_rule["expression"].count("not (") == 1, "block everything BUT GET/HEAD /health"
    worker_rule = next(r for d, r in by_description.items() if "worker" in d)
    assert worker_rule["expression"] == f'http.host in {{"worker.{config.domain}"}}'


def test_monitor_hosts_alone_fall_back_to_http_at_the_origin(plan):
    stack, resources = plan
    config = committed_stack_config(stack)
    rules = ruleset(resources, "http_config_settings")
    (rule,) = rules["rules"]
    assert rule["actionParameters"] == {"ssl": "flexible"}
    assert set(re.findall(r'"([^"]+)"', rule["expression"])) == {f"{m}.{config.domain}" for m in config.monitor_names}


def test_a_stack_that_does_not_own_its_zone_publishes_no_monitor_host_and_no_zone_rule():
    prod = committed_stack_config("prod")
    run = run_program("dev", config_overrides={
        "iot:domain": "staging.my-iot-app.com",
        "iot:cloudflare": {"accountId": prod.cloudflare.account_id, "zoneId": prod.cloudflare.zone_id,
                           "ownsZone": False},
    })
    names = published_names(run.resources)
    assert "tracker.staging.my-iot-app.com" in names
    assert not any(name.startswith(("frankfurt.", "helsinki.")) for name in names)
    assert not [r for r in run.resources if r.type in (RULESET, ZONE_SETTING)]
