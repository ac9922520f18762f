"""policy/__main__.py wires every rule into a mandatory CrossGuard ResourceValidationPolicy."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import yaml
from pulumi_policy import EnforcementLevel, PolicyResourceOptions, ResourceValidationArgs

from policy import iot_rules

PACK_DIR = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture(scope="module")
def pack():
    # run_name keeps the `if __name__ == "__main__"` PolicyPack server from starting.
    saved = list(sys.path)
    try:
        yield runpy.run_path(str(PACK_DIR / "__main__.py"), run_name="policy_pack_under_test")
    finally:
        sys.path[:] = saved


def validate(policy, resource_type, props, config=None):
    reported: list[tuple[str, str | None]] = []
    opts = PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=None, additional_secret_outputs=[])
    urn = f"urn:pulumi:dev::iot::{resource_type}::thing"
    args = ResourceValidationArgs(resource_type, props, urn, "thing", opts, None, config)
    policy.validate(args, lambda message, urn=None: reported.append((message, urn)))
    return reported


def test_every_rule_is_a_mandatory_policy(pack):
    policies = pack["build_policies"]()
    assert [p.name for p in policies] == list(iot_rules.RULES)
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in policies)
    assert pack["PACK_NAME"] == "iot-guardrails"


def test_a_violation_is_reported_against_the_resource(pack):
    policy = next(p for p in pack["build_policies"]() if p.name == "nomad-jobs-purge-on-destroy")
    reported = validate(policy, iot_rules.NOMAD_JOB, {"jobspec": "job {}", "purgeOnDestroy": False})
    assert len(reported) == 1
    message, urn = reported[0]
    assert "purge" in message and urn.endswith("::thing")
    assert validate(policy, iot_rules.NOMAD_JOB, {"jobspec": "job {}", "purgeOnDestroy": True}) == []


def test_cloudflare_ranges_come_from_pack_config_when_given(pack):
    policy = next(p for p in pack["build_policies"]() if p.name == "web-ports-from-cloudflare-only")
    props = {"rules": [{"direction": "in", "protocol": "tcp", "port": "443", "sourceIps": ["192.0.2.0/24"]}]}
    assert len(validate(policy, iot_rules.HCLOUD_FIREWALL, props)) == 1
    assert validate(policy, iot_rules.HCLOUD_FIREWALL, props, {"cloudflareRanges": ["192.0.2.0/24"]}) == []
    schema = policy.config_schema.properties["cloudflareRanges"]
    assert schema["default"] == list(iot_rules.CLOUDFLARE_RANGES)


def test_pack_project_file_is_a_python_pack_with_its_own_requirements():
    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python" and project["runtime"]["options"]["virtualenv"] == "venv"
    requirements = (PACK_DIR / "requirements.txt").read_text()
    assert "pulumi-policy==1.21.0" in requirements
