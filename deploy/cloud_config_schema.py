"""cloud-init's own check of user data, also where the `cloud-init` binary is not installed.

The offline plan validates every rendered user data with `cloud-init schema --config-file` (Debian's
`cloud-init`, the real validator) when it is on PATH. Elsewhere (a Mac, a plain Python image) it applies
the same JSON schema, vendored from cloud-init 22.4.2 (`vendor/cloud-init-22.4.2/`), with `jsonschema`
the way cloud-init 22.4 does: draft 4, `deprecated` annotations are not errors, and a file must start
with `#cloud-config` and hold a YAML mapping.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CLOUD_INIT_VERSION = "22.4.2"
SCHEMA_PATH = Path(__file__).parent / "vendor" / f"cloud-init-{CLOUD_INIT_VERSION}" / "schema-cloud-config-v1.json"
HEADER = "#cloud-config"


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    # cloud-init reports `deprecated: true` keys as deprecations, never as errors.
    validator_class = jsonschema.validators.extend(jsonschema.Draft4Validator,
                                                   {"deprecated": lambda *_args: iter(())})
    return validator_class(schema, format_checker=jsonschema.FormatChecker())


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def problems(text: str) -> list[str]:
    """Schema errors of the user data `text` as `key.path: message` (empty when cloud-init would accept it)."""
    if not text.startswith(HEADER):
        return [f"does not start with {HEADER}"]
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    if not isinstance(document, dict):
        return ["is not a YAML mapping"]
    errors = sorted(_validator().iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_path(error)}: {error.message}" for error in errors]
