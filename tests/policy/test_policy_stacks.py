"""The policy rules against every resource of the committed stacks (offline plan under Pulumi mocks).

The committed dev and prod stacks must pass every rule; injecting one violation per rule into an otherwise
compliant plan must be reported by that rule, on that resource, and by nothing else.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from deploy.plan import run_plan
from policy import iot_rules as r

STACKS = ("dev", "prod")


@pytest.fixture(scope="module", params=STACKS)
def plan(request):
    return request.param, run_plan(request.param)


def violations(resources) -> dict[tuple[str, str], dict[str, list[str]]]:
    found = {}
    for res in resources:
        result = r.evaluate(res.type, res.inputs)
        if result:
            found[(res.type, res.name)] = result
    return found


def cluster_servers(resources):
    return [x for x in resources if x.type == r.HCLOUD_SERVER and (x.inputs.get("labels") or {}).get("role") == "cluster"]


def test_committed_stack_has_no_violation(plan):
    _, resources = plan
    assert violations(resources) == {}


def test_the_rules_had_something_to_check(plan):
    stack, resources = plan
    types = {x.type for x in resources}
    assert cluster_servers(resources), "no cluster server carries labels.role=cluster"
    assert r.HCLOUD_FIREWALL in types
    assert r.NOMAD_JOB in types
    assert r.CF_DNS_RECORD in types or r.CF_LOAD_BALANCER in types
    assert any(isinstance(x.inputs.get("userData"), str) and x.inputs["userData"].startswith("#cloud-config")
               for x in resources if x.type == r.HCLOUD_SERVER)
    if stack == "prod":
        assert r.CF_LOAD_BALANCER in types and r.LINODE_INSTANCE in types


def _first(resources, predicate: Callable) -> int:
    for index, res in enumerate(resources):
        if predicate(res):
            return index
    raise AssertionError("the plan has no resource to inject this violation into")


def _cluster_server(res) -> bool:
    return res.type == r.HCLOUD_SERVER and (res.inputs.get("labels") or {}).get("role") == "cluster"


def _web_rule_index(inputs) -> int:
    return next(i for i, rule in enumerate(inputs["rules"]) if rule.get("port") in ("80", "443"))


def _move_out_of_eu(inputs):
    inputs["location"] = "ash"


def _drop_placement_group(inputs):
    inputs.pop("placementGroupId", None)


def _open_ssh_to_world(inputs):
    inputs["rules"].append({"direction": "in", "protocol": "tcp", "port": "22", "sourceIps": ["0.0.0.0/0", "::/0"]})


def _open_web_to_world(inputs):
    inputs["rules"][_web_rule_index(inputs)]["sourceIps"].append("0.0.0.0/0")


def _unproxy(inputs):
    inputs["proxied"] = False


def _secret_into_user_data(inputs):
    inputs["userData"] += "\nwrite_files:\n- path: /etc/iot.env\n  content: DATABASE_URL=postgresql://iot:pw-123456@db.example/iot\n"


def _flexible_ssl(inputs):
    inputs["value"] = "flexible"


def _no_purge(inputs):
    inputs["purgeOnDestroy"] = False


INJECTIONS = {
    "cluster-servers-in-eu": (_cluster_server, _move_out_of_eu),
    "cluster-servers-in-placement-group": (_cluster_server, _drop_placement_group),
    "no-world-open-management-ports": (lambda x: x.type == r.HCLOUD_FIREWALL, _open_ssh_to_world),
    "web-ports-from-cloudflare-only": (
        lambda x: x.type == r.HCLOUD_FIREWALL and any(rule.get("port") in ("80", "443") for rule in x.inputs["rules"]),
        _open_web_to_world,
    ),
    "proxied-hostnames-are-proxied": (
        lambda x: x.type in (r.CF_DNS_RECORD, r.CF_LOAD_BALANCER) and x.inputs.get("proxied") is True,
        _unproxy,
    ),
    "no-secrets-in-user-data": (
        lambda x: x.type == r.HCLOUD_SERVER and isinstance(x.inputs.get("userData"), str),
        _secret_into_user_data,
    ),
    "zone-tls-strict-with-origin-pulls": (
        lambda x: x.type == r.CF_ZONE_SETTING and x.inputs.get("settingId") == "ssl", _flexible_ssl,
    ),
    "nomad-jobs-purge-on-destroy": (lambda x: x.type == r.NOMAD_JOB, _no_purge),
}


def test_every_rule_has_an_injection():
    assert set(INJECTIONS) == set(r.RULES)


@pytest.mark.parametrize("rule_name", list(INJECTIONS))
def test_one_injected_violation_is_reported_by_its_rule_only(plan, rule_name):
    _, resources = plan
    pick, inject = INJECTIONS[rule_name]
    mutated = copy.deepcopy(resources)
    index = _first(mutated, pick)
    inject(mutated[index].inputs)
    target = (mutated[index].type, mutated[index].name)
    found = violations(mutated)
    assert list(found) == [target]
    assert list(found[target]) == [rule_name]
