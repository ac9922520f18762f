"""Per-kind check options in the device forms and on the device page: which fields each kind shows, form
text -> the options object the repository checks with the kind's model, and back for editing.

Form fields are named `opt_<option>`; only the chosen kind's are read (the form carries every kind's
fieldset, shown for the selected kind by /static/device_form.js), so switching kinds never leaks options.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iot.errors import InputError

PREFIX = "opt_"
# Present when the form has option fieldsets, so a form without them leaves a device's options alone.
OPTIONS_MARKER = "options_field"


@dataclass(frozen=True, slots=True)
class OptionField:
    name: str
    label: str
    input: str = "text"  # text, number, textarea or select
    placeholder: str = ""
    choices: tuple[str, ...] = ()


FIELDS: dict[str, tuple[OptionField, ...]] = {
    "http": (
        OptionField("method", "Method", "select", choices=("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")),
        OptionField("expected_status", "Expected status codes", placeholder="200-299, 304 (default: below 400)"),
        OptionField("headers", "Request headers", "textarea", placeholder="X-Api-Key: abc123 (one per line)"),
        OptionField("body", "Request body", "textarea", placeholder='{"ping": true} (POST, PUT, PATCH, DELETE)'),
        OptionField("keyword", "Body must contain", placeholder="ok"),
        OptionField("absent_keyword", "Body must not contain", placeholder="error"),
        OptionField("json_path", "JSON path", placeholder="$.status"),
        OptionField("json_equals", "… equals", placeholder="ok, 200 or true"),
    ),
    "tls": (OptionField("warn_days", "Warn when the certificate expires within (days)", "number", placeholder="14"),),
    "dns": (
        OptionField("record_type", "Record type", "select", choices=("A", "AAAA", "CNAME", "MX", "TXT", "NS")),
        OptionField("expected", "Expected value", placeholder="192.0.2.10 or mail.example.com"),
        OptionField("resolver", "Resolver", placeholder="IP[:port], e.g. 9.9.9.9 (default: the monitor's)"),
    ),
}


def _scalar(text: str) -> Any:
    """'200' -> 200, 'true' -> True, anything else stays text (json_equals from a form)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, bool | int | float) else text


def _headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise InputError("options.headers", f"line {number}: write one header per line as Name: value")
        headers[name.strip()] = value.strip()
    return headers


def options_from_form(kind: str, form: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The options a form sets for `kind` (blank fields left out: defaults); None when it has no option fields.

    Header values are never put back into a form (they often carry API keys), so a blank headers field
    keeps `current` headers; `clear_headers` removes them."""
    if OPTIONS_MARKER not in form:
        return None
    options: dict[str, Any] = {}
    if current and current.get("headers") and not form.get(PREFIX + "clear_headers"):
        options["headers"] = dict(current["headers"])
    for field in FIELDS.get(kind, ()):
        raw = form.get(PREFIX + field.name)
        text = raw.strip() if isinstance(raw, str) else ""
        if not text:
            continue
        if field.name == "headers":
            options["headers"] = _headers(raw)
        elif field.name == "body":
            options["body"] = raw  # sent as typed
        elif field.name == "expected_status":
            options["expected_status"] = [part.strip() for part in text.split(",") if part.strip()]
        elif field.name == "json_equals":
            options["json_equals"] = _scalar(text)
        elif field.input == "number":
            try:
                options[field.name] = int(text)
            except ValueError:
                raise InputError(f"options.{field.name}", f"must be a whole number, got {text!r}") from None
        else:
            options[field.name] = text
    return options


def form_values(options: Mapping[str, Any]) -> dict[str, str]:
    """A device's options as `opt_*` form values (for the edit form)."""
    values: dict[str, str] = {}
    for name, value in options.items():
        if name == "headers":
            continue  # kept unless replaced: see options_from_form
        if name == "expected_status":
            text = ", ".join(str(s) for s in value)
        elif name == "json_equals" and not isinstance(value, str):
            text = json.dumps(value)
        else:
            text = str(value)
        values[PREFIX + name] = text
    return values


def describe(kind: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of each option a device sets, for its page; header values are masked (they often
    carry API keys)."""
    labels = {f.name: f.label for f in FIELDS.get(kind, ())}
    shown: list[tuple[str, str]] = []
    for name, value in options.items():
        if name == "headers":
            text = ", ".join(f"{k}: •••" for k in value)  # noqa: RUF001 - a mask, not an ASCII dot
        else:
            text = form_values({name: value})[PREFIX + name]
        shown.append((labels.get(name, name), text))
    return shown
