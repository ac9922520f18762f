"""The shared input bounds (iot/inputs.py) and a guard that keeps every string the tracker accepts bounded."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from iot.errors import refused_by_database
from iot.inputs import INT8_MAX, control_character_problem, id_problem, text_problem
from iot.names import slug_problem
from iot.repo import tenants
from iot.repo.devices import target_problem
from iot.settings import TrackerSettings
from iot.tracker.app import create_app


@pytest.mark.parametrize("char", ["\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f", "\ud800"])
def test_control_characters_and_surrogates_are_named(char: str) -> None:
    problem = control_character_problem(f"ok{char}ok")
    assert problem and f"U+{ord(char):04X}" in problem and "position 2" in problem


@pytest.mark.parametrize("text", ["pump-17", "Zürich Nord", "温度", "a b", "emoji 🌡"])
def test_ordinary_text_passes(text: str) -> None:
    assert text_problem(text, 200) is None


def test_lengths_and_ids() -> None:
    assert "at most 5" in text_problem("x" * 6, 5)
    assert "at least 2" in text_problem("x", 5, min_length=2)
    assert id_problem(1) is None and id_problem(INT8_MAX) is None
    for bad in (0, -1, INT8_MAX + 1, True, "1"):
        assert id_problem(bad), bad


@pytest.mark.parametrize("slug", ["abc\n", "abc\x00", "ab c", "-abc", "abc-", "a" * 64, "ABC"])
def test_slugs_match_on_the_whole_string(slug: str) -> None:
    assert slug_problem(slug)


@pytest.mark.parametrize(("kind", "target"), [
    ("icmp", "host.example\n"), ("icmp", "10.0.0.5\x00"), ("tcp", "host.example\n:80"),
    ("http", "http://10.0.0.5/\r\nX: 1"), ("http", "http://10.0.0.5/" + "a" * 2048),
])
def test_targets_with_control_characters_or_too_long_are_refused(kind: str, target: str) -> None:
    assert target_problem(kind, target)


def _request_schemas(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, schema) of every parameter and request body of the document."""
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                found.append((f"{method.upper()} {path} {parameter['name']}", parameter["schema"]))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                found.append((f"{method.upper()} {path} body", body["schema"]))
    return found


def _strings(schema: Any, components: dict[str, Any], where: str, seen: set[str]) -> list[tuple[str, dict]]:
    """Every string schema reachable from `schema`, following $refs once each."""
    if isinstance(schema, list):
        return [s for item in schema for s in _strings(item, components, where, seen)]
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return _strings(components[name], components, name, seen)
    found = [(where, schema)] if schema.get("type") == "string" else []
    for key, value in schema.items():
        if key == "properties":
            for prop, sub in value.items():
                found += _strings(sub, components, f"{where}.{prop}", seen)
        elif key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
            found += _strings(value, components, where, seen)
    return found


def test_every_string_the_tracker_accepts_has_a_length_bound() -> None:
    document = create_app(TrackerSettings()).openapi()
    components = document["components"]["schemas"]
    unbounded = []
    for where, schema in _request_schemas(document):
        for place, string in _strings(schema, components, where, set()):
            if "maxLength" not in string and "enum" not in string and "const" not in string \
                    and string.get("format") != "date-time":
                unbounded.append(place)
    assert not unbounded, f"strings without maxLength: {unbounded}"


@pytest.mark.parametrize(("sql", "field"), [
    ("INSERT INTO devices (tenant_id, name, kind, target) VALUES ($1, 'x', 'http', repeat('h', 2049))", "target"),
    ("INSERT INTO devices (tenant_id, name, kind) VALUES ($1, repeat('n', 201), 'push')", "name"),
    ("UPDATE tenants SET webhook_url = repeat('u', 2049) WHERE id = $1", "webhook_url"),
    ("UPDATE tenants SET webhook_secret = repeat('s', 201) WHERE id = $1", "webhook_secret"),
])
async def test_the_schema_refuses_over_long_strings_and_the_error_names_the_column(pool, sql: str, field: str) -> None:
    tenant, _ = await tenants.create_tenant(pool, "schema-bounds")
    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await pool.execute(sql, tenant.id)
    problem = refused_by_database(refused.value)
    assert problem.field == field and "cannot store" in problem.reason, problem
