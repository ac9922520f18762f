"""dev and prod never collide at Cloudflare: the committed stacks run whole under Pulumi mocks.

A zone holds one entry-point ruleset per phase, one value per zone setting, and one record set per
name; two stacks in one zone must not both declare them. These tests look at what the real program
declares for each committed stack, not at the config values.
"""

from __future__ import annotations

import pytest

from components.config import ConfigError
from deploy import mocks
from deploy.mocks import load_stack_config_values, run_program
from deploy.plan import run_plan

RECORD = "cloudflare:index/dnsRecord:DnsRecord"
LB = "cloudflare:index/loadBalancer:LoadBalancer"
RULESET = "cloudflare:index/ruleset:Ruleset"
ZONE_SETTING = "cloudflare:index/zoneSetting:ZoneSetting"
ZONE_SCOPED_SINGLETONS = {RULESET: "phase", ZONE_SETTING: "settingId"}


def names_by_zone(resources) -> set[tuple[str, str]]:
    """(zone, hostname) of every record and load balancer: Cloudflare keeps one record set per name."""
    found = set()
    for r in resources:
        if r.type == RECORD or r.type == LB:
            found.add((r.inputs["zoneId"], r.inputs["name"]))
    return found


def records_by_zone(resources) -> set[tuple[str, str, str]]:
    return {(r.inputs["zoneId"], r.inputs["name"], r.inputs["type"]) for r in resources if r.type == RECORD}


def singletons(resources) -> set[tuple[str, str, str]]:
    """(zone, kind, which) of every zone-wide singleton: entry-point rulesets per phase, zone settings."""
    found = set()
    for r in resources:
        if r.type in ZONE_SCOPED_SINGLETONS:
            key = ZONE_SCOPED_SINGLETONS[r.type]
            found.add((r.inputs["zoneId"], r.type, r.inputs[key]))
    return found


@pytest.fixture(scope="module")
def plans():
    return {stack: run_plan(stack) for stack in ("dev", "prod")}


def test_dev_and_prod_share_no_record(plans):
    assert records_by_zone(plans["dev"]) and records_by_zone(plans["prod"])
    assert records_by_zone(plans["dev"]) & records_by_zone(plans["prod"]) == set()
    # A CNAME beside an A record of the same name is refused too: compare names, whatever the type.
    assert names_by_zone(plans["dev"]) & names_by_zone(plans["prod"]) == set()


def test_dev_and_prod_share_no_zone_singleton(plans):
    dev, prod = singletons(plans["dev"]), singletons(plans["prod"])
    assert dev and prod, "each stack owns its zone's SSL mode, origin pulls and rulesets"
    assert dev & prod == set()


def test_each_stack_declares_each_singleton_once(plans):
    for stack, resources in plans.items():
        declared = [
            (r.inputs["zoneId"], r.type, r.inputs[ZONE_SCOPED_SINGLETONS[r.type]])
            for r in resources if r.type in ZONE_SCOPED_SINGLETONS
        ]
        assert len(declared) == len(set(declared)), f"{stack} declares a zone singleton twice: {declared}"


def test_a_stack_file_that_collides_is_refused_before_any_resource(monkeypatch):
    """dev pointed at prod's zone and domain: the program stops at config, nothing is registered."""
    _, prod, _ = load_stack_config_values("prod")
    overrides = {"iot:domain": prod["iot:domain"], "iot:cloudflare": prod["iot:cloudflare"]}
    registered: list[str] = []
    original = mocks.RecordingMonitor.RegisterResource

    def spy(self, request):
        registered.append(request.type)
        return original(self, request)

    monkeypatch.setattr(mocks.RecordingMonitor, "RegisterResource", spy)
    with pytest.raises(ConfigError, match="stack prod"):
        run_program("dev", config_overrides=overrides)
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


def test_a_stack_sharing_a_zone_without_owning_it_declares_no_singleton():
    _, prod, _ = load_stack_config_values("prod")
    overrides = {
        "iot:domain": "staging.my-iot-app.com",
        "iot:cloudflare": {**prod["iot:cloudflare"], "ownsZone": False},
    }
    run = run_program("dev", config_overrides=overrides)
    assert singletons(run.resources) == set()
    assert {name for _, name in names_by_zone(run.resources)} and all(
        name.endswith("staging.my-iot-app.com") for _, name in names_by_zone(run.resources)
    )
