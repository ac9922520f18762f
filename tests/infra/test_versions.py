"""Pinned versions: no pin may sit below a release that fixes a published vulnerability.

Nomad and Traefik face the internet (Traefik) or run every workload (Nomad): a patch release
that fixes a CVE is a reason to move the pin. This table records the newest such release per
component; raise it when a new advisory ships, and the defaults and every stack must follow.
"""

from __future__ import annotations

import pytest
import yaml

from components.config import DEFAULT_VERSIONS
from infra.harness import ROOT

# component -> (first release carrying the fix, what it fixes)
FIXED_IN: dict[str, tuple[str, str]] = {
    "nomad": ("2.0.4", "CVE-2026-14891, CVE-2026-14896 (docker driver sandbox bypasses)"),
    "traefik": ("v3.6.18", "GHSA-9cr8-q42q-g8m7 (HTTP/3 mTLS bypass) and the CVEs of v3.6.4-v3.6.17"),
}


def version_tuple(text: str) -> tuple[int, ...]:
    """`v3.6.25@sha256:...` -> (3, 6, 25): a digest pins the bytes of that release."""
    return tuple(int(part) for part in text.split("@")[0].lstrip("v").split("."))


def stack_versions(stack: str) -> dict[str, str]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["iot:versions"]


@pytest.mark.parametrize("source", ["defaults", "dev", "prod"])
def test_no_pin_is_older_than_a_security_fix(source):
    pins = DEFAULT_VERSIONS if source == "defaults" else stack_versions(source)
    for component, (fixed, advisories) in FIXED_IN.items():
        assert version_tuple(pins[component]) >= version_tuple(fixed), (
            f"{source}: {component} {pins[component]} predates {fixed}, which fixes {advisories}"
        )


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stacks_pin_the_defaults(stack):
    # One fact in one place: a stack that diverges from the defaults must say why in its own file.
    # A stack may add the image digest of the same release (prod pins Traefik by digest).
    assert {k: v.split("@")[0] for k, v in stack_versions(stack).items()} == DEFAULT_VERSIONS
