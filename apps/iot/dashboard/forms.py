"""Turn submitted HTML forms into repository input, with errors that name the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from iot.dashboard.check_options import options_from_form
from iot.errors import InputError
from iot.repo.devices import DeviceSpec

INT_FIELDS = ("interval_s", "timeout_ms", "grace_s", "parent_id", "anomaly_checks", "retries")
REQUIRED_INTS = frozenset({"interval_s", "timeout_ms"})  # blank keeps the default / current value
FLOAT_FIELDS = ("anomaly_factor", "anomaly_min_ms")
OPTIONAL_TEXT = ("target",)
TEXT_FIELDS = ("name", "kind", "target")
# Present in the device form as a hidden input so an unticked "enabled" box is told apart from no box.
ENABLED_MARKER = "enabled_field"
# Tags are typed as one line: commas, semicolons or spaces separate them (none is a tag character).
TAG_SEPARATORS = re.compile(r"[,;\s]+")


def split_tags(value: str) -> list[str]:
    """`"env:prod, site/berlin"` -> ["env:prod", "site/berlin"]; the repository checks each one."""
    return [tag for tag in TAG_SEPARATORS.split(value) if tag]


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def device_changes(form: Mapping[str, Any], current_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fields of a device form as typed values; blank optional fields become None (use the default).
    `current_options`: the device's options before the edit (kept header values)."""
    changes: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        if name in form:
            value = _text(form, name)
            changes[name] = value or (None if name in OPTIONAL_TEXT else "")
    for name in INT_FIELDS:
        if name in form:
            value = _text(form, name)
            if not value and name in REQUIRED_INTS:
                continue
            try:
                changes[name] = int(value) if value else None
            except ValueError:
                raise InputError(name, f"must be a whole number, got {value!r}") from None
    for name in FLOAT_FIELDS:
        if name in form:
            value = _text(form, name)
            try:
                changes[name] = float(value) if value else None
            except ValueError:
                raise InputError(name, f"must be a number, got {value!r}") from None
    if "tags" in form:
        value = form.get("tags")
        changes["tags"] = split_tags(value if isinstance(value, str) else "")
    if ENABLED_MARKER in form:
        changes["enabled"] = form.get("enabled") in ("on", "true", "1")
    options = options_from_form(str(changes.get("kind") or ""), form, current_options)
    if options is not None:
        changes["options"] = options
    return changes


def new_device_spec(form: Mapping[str, Any]) -> DeviceSpec:
    changes = device_changes(form)
    changes.setdefault("enabled", True)
    return DeviceSpec(**{"name": "", "kind": "", **changes})
