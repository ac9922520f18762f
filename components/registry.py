"""Container registry credentials as Docker's config.json, pushed to every node that pulls images.

Nomad's docker driver reads the file on each pull (plugin "docker" auth.config in nomad.json); the
monitors' `docker pull` reads it through DOCKER_CONFIG. Credentials never enter a job spec, user
data or a command line. Without credentials the file lists no registry and pulls are anonymous.
"""

from __future__ import annotations

import json

import pulumi


def docker_config() -> pulumi.Output[str]:
    """config.json for anonymous pulls: no registry listed."""
    return pulumi.Output.secret(json.dumps({"auths": {}}, indent=2) + "\n")
