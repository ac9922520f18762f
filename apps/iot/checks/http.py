"""http: request a URL; up on an expected status (default: below 400) and, when asked, a body that holds or
lacks a keyword or has a JSON path equal to a value.

Only devices with body conditions make a monitor read the body, and at most `MAX_BODY_READ` of it; plain
checks (GET, default statuses) keep the monitor's fast path.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iot.checks.base import CheckKind
from iot.inputs import control_character_problem, url_port_problem

# A monitor reads at most this much of a response body for keyword and JSON path conditions; a longer
# body fails the check ("body over the limit") instead of growing memory.
MAX_BODY_READ = 256 * 1024
MAX_HEADERS = 20
MAX_HEADER_BYTES = 4096  # names and values together, like common server limits
MAX_REQUEST_BODY = 8192
MAX_STATUS_RULES = 20
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}")
STATUS_RULE = re.compile(r"([1-5][0-9][0-9])(?:-([1-5][0-9][0-9]))?")
# The probe sets these itself (framing, connection handling, target host): a tenant value would let a
# check smuggle a second request or reach another virtual host than the URL's.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te",
                              "trailer", "keep-alive", "proxy-connection", "expect"})
METHODS_WITH_BODY = ("POST", "PUT", "PATCH", "DELETE")
Scalar = str | bool | int | float


def _text(value: str, max_length: int) -> str:
    problem = control_character_problem(value)
    if problem:
        raise ValueError(problem)
    if len(value) > max_length:
        raise ValueError(f"at most {max_length} characters (got {len(value)})")
    return value


class HttpOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field({}, description=f"Request headers, at most {MAX_HEADERS}.")
    body: str = Field("", description=f"Request body (POST, PUT, PATCH, DELETE), at most {MAX_REQUEST_BODY} bytes.")
    expected_status: list[str | int] = Field(
        [], max_length=MAX_STATUS_RULES,
        description='Statuses that count as up: codes and ranges, e.g. [200, "300-399"] (default: below 400).')
    keyword: str = Field("", description="Text the body must contain.")
    absent_keyword: str = Field("", description="Text the body must not contain.")
    json_path: str = Field("", description="JSONPath into the body (e.g. $.status) ...")
    json_equals: Scalar | None = Field(None, description="... whose first match must equal this value.")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_HEADERS:
            raise ValueError(f"at most {MAX_HEADERS} headers (got {len(value)})")
        size = sum(len(name.encode()) + len(text.encode()) for name, text in value.items())
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"at most {MAX_HEADER_BYTES} bytes of header names and values together (got {size})")
        for name, text in value.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name[:60]!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{name!r} is set by the monitor; remove it")
            try:
                _text(text, 1000)
            except ValueError as exc:
                raise ValueError(f"header {name!r}: {exc}") from None
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        if "\x00" in value or len(value.encode()) > MAX_REQUEST_BODY:
            raise ValueError(f"at most {MAX_REQUEST_BODY} bytes of text without NUL characters")
        return value

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, value: list[str | int]) -> list[str | int]:
        rules: list[str | int] = []
        for i, rule in enumerate(value):
            match = STATUS_RULE.fullmatch(str(rule).strip())
            if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
                raise ValueError(f"item {i}: {str(rule)[:40]!r} is not a status 100-599 or a range like '200-299'")
            rules.append(int(rule) if match.group(2) is None else match.group(0))
        return rules

    @field_validator("keyword", "absent_keyword", "json_path")
    @classmethod
    def _short_text(cls, value: str) -> str:
        return _text(value, 200)

    @field_validator("json_path")
    @classmethod
    def _json_path(cls, value: str) -> str:
        if value:
            from jsonpath_ng import parse  # imported here: only devices with a JSON path need the parser

            try:
                parse(value)
            except Exception:  # noqa: BLE001 - the parser raises several types for bad paths
                raise ValueError(f"{value[:60]!r} is not a JSONPath, e.g. '$.status' or '$.items[0].state'") from None
        return value

    @field_validator("json_equals")
    @classmethod
    def _json_equals(cls, value: Scalar | None) -> Scalar | None:
        return _text(value, 200) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> HttpOptions:
        if self.body and self.method not in METHODS_WITH_BODY:
            raise ValueError(f"a request body needs method {', '.join(METHODS_WITH_BODY)} (method is {self.method})")
        if bool(self.json_path) != (self.json_equals is not None):
            raise ValueError("json_path and json_equals go together; give both or neither")
        if self.method == "HEAD" and self.reads_body:
            raise ValueError("HEAD responses have no body; use GET for keyword and JSON path conditions")
        return self

    @property
    def reads_body(self) -> bool:
        return bool(self.keyword or self.absent_keyword or self.json_path)


def status_matches(status: int, rules: list[str | int]) -> bool:
    """Is `status` expected? No rules: below 400 (redirects are not followed, and count as up)."""
    if not rules:
        return status < 400
    for rule in rules:
        if isinstance(rule, int):
            if status == rule:
                return True
        else:
            low, _, high = rule.partition("-")
            if int(low) <= status <= int(high):
                return True
    return False


class Http(CheckKind):
    name = "http"
    example = "https://pump-1.example.com/health"
    description = "http: request target URL"
    Options = HttpOptions
    options_example = {"expected_status": ["200-299"], "keyword": "ok"}

    def _target_problem(self, target: str) -> str | None:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{target!r} is not an http(s) URL with a host, e.g. 'http://pump-1.example.com:8080/health'"
        return url_port_problem(target)

    def host(self, target: str) -> str:
        return urlsplit(target).hostname or ""


KIND = Http()
