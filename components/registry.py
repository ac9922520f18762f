"""Container registry credentials (iot:registry) as Docker's config.json, pushed to every node that
pulls images.

Nomad's docker driver reads the file on each pull (plugin "docker" auth.config in nomad.json); the
monitors' `docker pull` reads it through DOCKER_CONFIG, as after a `docker login`. Credentials never
enter a job spec, user data or a command line. Without credentials the file lists no registry and
every pull is anonymous; images of registries not in the file are pulled anonymously too.
"""

from __future__ import annotations

import base64
import json

import pulumi

from components.config import RegistryConfig


def docker_config(registry: RegistryConfig | None) -> pulumi.Output[str]:
    """config.json content (always a secret Output, even without credentials)."""
    if registry is None:
        return pulumi.Output.secret(json.dumps({"auths": {}}, indent=2) + "\n")

    def render(password: str) -> str:
        auth = base64.b64encode(f"{registry.username}:{password}".encode()).decode()
        return json.dumps({"auths": {registry.server: {"auth": auth}}}, indent=2) + "\n"

    return pulumi.Output.secret(registry.password.apply(render))
