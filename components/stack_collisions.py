"""Two stacks in one Cloudflare account must never fight over a zone (DESIGN §4.4).

A zone has one SSL mode, one Authenticated Origin Pulls setting and one entry-point ruleset per
phase, and one record set per name. So: exactly one stack owns a zone's singletons
(`iot:cloudflare.ownsZone`), and stacks sharing a zone publish disjoint names. The other stacks
are read from their committed `Pulumi.<stack>.yaml` files, leniently: a file this module cannot
read is that stack's own validator's business, not a reason to block this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.edge_layout import public_hostnames

NAMESPACE = "iot"
DEFAULT_DOMAIN = "my-iot-app.com"


@dataclass(frozen=True)
class Footprint:
    """What one stack claims in Cloudflare: its zone, whether it owns the zone, the names it publishes."""

    stack: str
    domain: str
    zone_id: str
    owns_zone: bool
    hostnames: frozenset[str]


def footprint(stack: str, domain: str, zone_id: str, owns_zone: bool, monitor_names: list[str]) -> Footprint:
    # A stack that does not own its zone cannot add the config rule monitor hosts need: it publishes none.
    names = public_hostnames(domain, monitor_names, publish_monitors=owns_zone)
    return Footprint(stack, domain, zone_id, owns_zone, frozenset(names))


def lenient_footprint(stack: str, raw: Mapping[str, Any]) -> Footprint | None:
    """The footprint of another stack's raw `iot:` values, or None when they cannot be read."""
    try:
        domain = str(raw.get("domain", DEFAULT_DOMAIN)).strip().lower()
        cloudflare = raw["cloudflare"]
        zone_id = str(cloudflare["zoneId"]).strip()
        owns = cloudflare.get("ownsZone", True)
        owns_zone = owns if isinstance(owns, bool) else str(owns).lower() == "true"
        monitors = [str(m["name"]) for m in raw.get("monitors") or []]
    except (AttributeError, KeyError, TypeError):
        return None
    return footprint(stack, domain, zone_id, owns_zone, monitors)


def collisions(own: Footprint, others: list[Footprint]) -> list[str]:
    """Problems (key, value, fix) between this stack and the other stacks; empty when they coexist."""
    problems = []
    for other in sorted(others, key=lambda f: f.stack):
        if other.stack == own.stack:
            continue
        if other.zone_id == own.zone_id:
            problems += _same_zone(own, other)
        elif other.domain == own.domain:
            problems.append(
                f"iot:domain {own.domain!r} is also stack {other.stack}'s domain, but in zone {other.zone_id} "
                f"while this stack says zone {own.zone_id}: a domain lives in one Cloudflare zone, so one of "
                "the two iot:cloudflare.zoneId values is wrong"
            )
    return problems


def _same_zone(own: Footprint, other: Footprint) -> list[str]:
    problems = []
    if own.owns_zone and other.owns_zone:
        problems.append(
            f"iot:cloudflare.ownsZone: stack {other.stack} also owns zone {own.zone_id}; a zone has one SSL "
            "mode, one Authenticated Origin Pulls setting and one ruleset per phase, so exactly one stack may "
            "own it: give this stack its own zone (a separate domain for dev is the usual answer), or set "
            "ownsZone: false here"
        )
    if not own.owns_zone and not other.owns_zone:
        problems.append(
            f"iot:cloudflare.ownsZone: no stack owns zone {own.zone_id} (this stack and stack {other.stack} "
            "both set ownsZone: false); set ownsZone: true in exactly one of them so the zone's SSL mode, "
            "origin pulls and rulesets are managed"
        )
    shared = sorted(own.hostnames & other.hostnames)
    if shared:
        problems.append(
            f"iot:domain {own.domain!r}: {len(shared)} hostname(s) are also published by stack {other.stack} "
            f"in the same zone {own.zone_id}: {', '.join(shared)}; give this stack its own zone "
            f"(iot:cloudflare.zoneId) or a domain whose names do not overlap, e.g. staging.{other.domain}"
        )
    return problems


def committed_stacks(root: Path, exclude: str) -> dict[str, dict[str, Any]]:
    """Raw `iot:` values (namespace stripped, secure values left out) of every other Pulumi.<stack>.yaml."""
    stacks: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("Pulumi.*.yaml")):
        name = path.name[len("Pulumi."):-len(".yaml")]
        if name == exclude:
            continue
        try:
            document = yaml.safe_load(path.read_text()) or {}
            config = document.get("config") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        prefix = f"{NAMESPACE}:"
        stacks[name] = {
            key[len(prefix):]: value
            for key, value in config.items()
            if isinstance(key, str) and key.startswith(prefix) and not (isinstance(value, Mapping) and "secure" in value)
        }
    return stacks
