"""The iot-guardrails policy pack: every rule of iot_rules.py as a mandatory ResourceValidationPolicy.

The Pulumi analyzer runs this file by path with the pack directory first on sys.path, so the rules are
imported as the top-level module `iot_rules` (tests import the same file as `policy.iot_rules`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

_PACK_DIR = str(Path(__file__).resolve().parent)
if _PACK_DIR not in sys.path:
    sys.path.insert(0, _PACK_DIR)
import iot_rules  # noqa: E402

PACK_NAME = "iot-guardrails"

# Rules that read pack config (`pulumi preview --policy-pack-config`), with the defaults they fall back to.
CONFIG_SCHEMAS = {
    "web-ports-from-cloudflare-only": PolicyConfigSchema(
        properties={
            "cloudflareRanges": {
                "type": "array",
                "items": {"type": "string"},
                "default": list(iot_rules.CLOUDFLARE_RANGES),
                "description": "CIDRs allowed to reach 80/443 (Cloudflare's published ranges).",
            }
        }
    ),
    "proxied-hostnames-are-proxied": PolicyConfigSchema(
        properties={
            "unproxiedHostnames": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "A/AAAA/CNAME records deliberately left DNS-only (full names).",
            }
        }
    ),
}


def _rule_kwargs(name: str, config: dict) -> dict:
    if name == "web-ports-from-cloudflare-only":
        return {"cloudflare_ranges": config.get("cloudflareRanges") or iot_rules.CLOUDFLARE_RANGES}
    if name == "proxied-hostnames-are-proxied":
        return {"unproxied_hostnames": config.get("unproxiedHostnames") or ()}
    return {}


def _validator(name: str, rule: Callable[..., list[str]]):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        kwargs = _rule_kwargs(name, dict(args.get_config() or {}))
        for message in rule(args.resource_type, args.props, **kwargs):
            report_violation(message, args.urn)

    return validate


def build_policies() -> list[ResourceValidationPolicy]:
    return [
        ResourceValidationPolicy(
            name=name,
            description=description,
            validate=_validator(name, rule),
            enforcement_level=EnforcementLevel.MANDATORY,
            config_schema=CONFIG_SCHEMAS.get(name),
        )
        for name, (description, rule) in iot_rules.RULES.items()
    ]


if __name__ == "__main__":
    PolicyPack(name=PACK_NAME, policies=build_policies(), enforcement_level=EnforcementLevel.MANDATORY)
