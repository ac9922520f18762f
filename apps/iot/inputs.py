"""Bounds of every value a client sends: string lengths, characters, integer ranges. One place for all.

The tracker's request schemas and parameters use the annotated types below; the repositories (which the
dashboard's forms and CSV import go through) call `text_problem` and `id_problem`. Both refuse the same
values with the same words, before anything reaches Postgres or Redis:

- text is a single line: no control characters (C0, DEL, C1) and no lone surrogates. Postgres cannot
  store NUL (the whole statement fails), and line breaks would forge log lines and headers;
- every string has a maximum length: probe targets and URLs 2048, names 200, secrets 200, filters 200;
- integers fit their column: ids are bigint (1 .. 2^63-1), everything else is bounded where it is declared.

Format rules (URL shape, host:port, DNS labels, slugs) stay with their owners and run after these checks:
`target_text_problem` is the length/character half of target validation on purpose, so other checks
(e.g. the egress policy) compose with it instead of replacing it.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from annotated_types import Ge, Le
from pydantic import AfterValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1

MAX_NAME = 200  # device names, tenant display names, metric names
MAX_TARGET = 2048  # probe targets (URL, host:port, host) and webhook URLs
MAX_SECRET = 200  # webhook secrets
MIN_SECRET = 16
MAX_SEARCH = 200  # free-text filters
MAX_LABEL = 63  # one DNS label: slugs, region names
MAX_CURSOR = 500
MAX_TAGS = 20  # tags per device (and per filter)
MAX_TAG = 50  # characters per tag

# C0 controls, DEL, C1 controls and UTF-16 surrogates (which no UTF-8 store accepts alone).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The same rule as a JSON Schema pattern, for the OpenAPI document (clients and fuzzers read it).
SINGLE_LINE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A normalised tag: ASCII letters (lower-case), digits and -_.:/ so "env:prod" and "site/berlin" work.
TAG = re.compile(r"[a-z0-9_.:/-]+")
TAG_RULE = f"must be 1-{MAX_TAG} characters: letters, digits and -_.:/ only (e.g. 'env:prod', 'site/berlin')"


def control_character_problem(value: str) -> str | None:
    """Why `value` is not single-line text (naming the first bad character), or None."""
    bad = _FORBIDDEN.search(value)
    if bad is None:
        return None
    return f"must not contain control characters (found U+{ord(bad.group()):04X} at position {bad.start()}); remove it"


def text_problem(value: str, max_length: int, *, min_length: int = 0) -> str | None:
    """Why `value` cannot be stored as a single-line text of `min_length`..`max_length` characters, or None."""
    if len(value) > max_length:
        return f"must be at most {max_length} characters (got {len(value)})"
    if len(value) < min_length:
        return f"must be at least {min_length} characters (got {len(value)})"
    return control_character_problem(value)


def target_text_problem(target: str) -> str | None:
    """The length and character half of checking a probe target or webhook URL."""
    return text_problem(target, MAX_TARGET)


def ascii_int(text: str, max_digits: int = 18) -> int | None:
    """`text` as a whole number when it is 1..max_digits ASCII digits, else None. str.isdigit() is not
    enough: it passes '²' (int() raises) and Arabic-Indic digits (int() reads them), and int() of thousands
    of digits raises too."""
    return int(text) if 0 < len(text) <= max_digits and text.isascii() and text.isdigit() else None


def url_port_problem(url: str) -> str | None:
    """Why the port written in `url` is not 1-65535, or None (no port written is fine). urlsplit() only
    raises when `.port` is read, which would otherwise happen later, e.g. while masking the URL."""
    try:
        port = urlsplit(url).port
    except ValueError:
        port = 0
    return None if port != 0 else f"{url[:80]!r} has an invalid port: write a port 1-65535 or none"


def normalise_tag(value: str) -> tuple[str, str | None]:
    """(the tag trimmed and lower-cased, why it cannot be a tag or None)."""
    problem = control_character_problem(value)
    if problem:
        return value, problem
    tag = value.strip().lower()
    if not 1 <= len(tag) <= MAX_TAG or not TAG.fullmatch(tag):
        return tag, f"{TAG_RULE}; got {value[:60]!r}"
    return tag, None


def tags_problem(values: list[str]) -> tuple[list[str], tuple[int | None, str] | None]:
    """(normalised tags, duplicates collapsed in first-seen order; (index of the bad one or None, why) or None)."""
    if len(values) > MAX_TAGS:
        return values, (None, f"must be at most {MAX_TAGS} tags (got {len(values)}); remove some")
    tags: dict[str, None] = {}
    for i, value in enumerate(values):
        if not isinstance(value, str):
            return values, (i, f"{TAG_RULE}; got {value!r}")
        tag, problem = normalise_tag(value)
        if problem:
            return values, (i, problem)
        tags[tag] = None
    return list(tags), None


def id_problem(value: int) -> str | None:
    """Why `value` cannot be a row id (bigint, from 1), or None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT8_MAX:
        return f"must be a whole number from 1 to {INT8_MAX}"
    return None


def _single_line(value: str) -> str:
    problem = control_character_problem(value)
    if problem:
        raise PydanticCustomError("control_character", problem)
    return value


def _tag(value: str) -> str:
    tag, problem = normalise_tag(value)
    if problem:
        raise PydanticCustomError("tag", problem)
    return tag


def _dns_label(value: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise PydanticCustomError(
            "dns_label", "must be one DNS label: 1-63 lowercase letters, digits or '-', not starting or ending with '-'")
    return value


def _line(max_length: int, min_length: int = 0) -> tuple[object, ...]:
    """Metadata of a single-line string type: length limits, the character check, and its schema pattern."""
    return (StringConstraints(min_length=min_length, max_length=max_length), AfterValidator(_single_line),
            Field(json_schema_extra={"pattern": SINGLE_LINE_PATTERN}))


# Request fields and parameters (pydantic / FastAPI). Optional ones are `X | None` at the use site.
Name = Annotated[str, *_line(MAX_NAME, 1)]
DisplayName = Annotated[str, *_line(MAX_NAME)]
Target = Annotated[str, *_line(MAX_TARGET)]
Url = Annotated[str, *_line(MAX_TARGET)]
Secret = Annotated[str, *_line(MAX_SECRET, MIN_SECRET)]
SearchText = Annotated[str, *_line(MAX_SEARCH)]
CursorText = Annotated[str, *_line(MAX_CURSOR)]
Slug = Annotated[str, *_line(MAX_LABEL)]
Label = Annotated[str, StringConstraints(max_length=MAX_LABEL), AfterValidator(_dns_label),
                  Field(json_schema_extra={"pattern": f"^{DNS_LABEL.pattern}$"})]
Id = Annotated[int, Ge(1), Le(INT8_MAX)]
# One tag, normalised (trimmed, lower-case); lists of them are bounded where they are declared (MAX_TAGS).
TagText = Annotated[str, AfterValidator(_tag),
                    Field(json_schema_extra={"pattern": "^[A-Za-z0-9_.:/-]{1,50}$", "maxLength": MAX_TAG})]
Offset = Annotated[int, Ge(0), Le(INT8_MAX)]
