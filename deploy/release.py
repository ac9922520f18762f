"""Release inputs: the image digests a deploy passes in, and their stand-ins for offline runs.

A protected stack deploys images by digest only (components/config.py refuses tags there), and the
digests come from the images workflow at deploy time, like secrets come from CI secrets. Offline runs
(the plan, tests under mocks) have no release, so they stand in fabricated digests, visibly derived
from the image kind (like the fabricated IPs), and `preview` can reuse what the stack last deployed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from components.config import repository_of

IMAGE_KINDS = ("app", "marketing", "docs")
DEFAULT_REPOSITORIES = {
    "app": "ghcr.io/my-iot-app/iot",
    "marketing": "ghcr.io/my-iot-app/marketing",
    "docs": "ghcr.io/my-iot-app/docs",
}


def placeholder_digest(kind: str) -> str:
    """A stable, recognisable stand-in: sha256 of `plan-release:<kind>`."""
    return "sha256:" + hashlib.sha256(f"plan-release:{kind}".encode()).hexdigest()


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def placeholder_images(values: Mapping[str, Any]) -> dict[str, str] | None:
    """`iot:images` with stand-in digests for a protected stack that names no digest, else None.

    `values` are the stack's config values by full key (`iot:protect`, `iot:images`).
    """
    if not _truthy(values.get("iot:protect")):
        return None
    images = dict(values.get("iot:images") or {})
    filled = {}
    for kind in IMAGE_KINDS:
        ref = str(images.get(kind, DEFAULT_REPOSITORIES[kind]))
        filled[kind] = ref if "@sha256:" in ref else f"{repository_of(ref)}@{placeholder_digest(kind)}"
    return filled


def deployed_image_config(outputs: Mapping[str, Any]) -> dict[str, str]:
    """`--config` values that keep the images a stack last deployed (its `images` output), for previews."""
    images = outputs.get("images")
    if not isinstance(images, Mapping) or not all(isinstance(images.get(k), str) for k in IMAGE_KINDS):
        raise LookupError(
            "the stack has no `images` output yet (never deployed by this version of the program): pass the "
            "images explicitly, e.g. --config iot:images.app=ghcr.io/<owner>/iot@sha256:<digest>"
        )
    return {f"iot:images.{kind}": images[kind] for kind in IMAGE_KINDS}
