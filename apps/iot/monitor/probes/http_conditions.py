"""What an http device with options asks of a response: method, headers and body to send, statuses that
count as up, and keyword / JSON path conditions on the body (read only for those, at most MAX_BODY_READ).

Options arrive in check batches already validated by `iot.checks.http`; they are turned into a
`Conditions` once per distinct options object (cached by its JSON text). Verdict texts are fixed: a
response's bytes never reach a tenant, only which condition failed.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from iot import failures
from iot.checks.http import MAX_BODY_READ, status_matches
from iot.monitor.probes.common import ProbeResult

BODY_TOO_LARGE = f"response body over {MAX_BODY_READ // 1024} KiB"
KEYWORD_MISSING = "keyword not found in the response body"
KEYWORD_PRESENT = "unwanted keyword found in the response body"
NOT_JSON = "response body is not JSON"
JSON_NO_MATCH = "JSON path matches nothing"
JSON_DIFFERS = "JSON path value differs from the expected value"


@dataclass(frozen=True, slots=True)
class Conditions:
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    expected_status: tuple[str | int, ...] = ()
    keyword: bytes = b""
    absent_keyword: bytes = b""
    json_path: Any = None  # a parsed jsonpath_ng expression
    json_equals: Any = None

    @property
    def reads_body(self) -> bool:
        return bool(self.keyword or self.absent_keyword or self.json_path is not None)

    def judge(self, status: int, body: bytes | None, latency_ms: float) -> ProbeResult:
        """The verdict on a response (`body` is None when it was not read)."""
        if not status_matches(status, list(self.expected_status)):
            expected = ", ".join(str(s) for s in self.expected_status) or "below 400"
            return ProbeResult(False, latency_ms, f"{failures.http_status(status)}, expected {expected}")
        if body is None:
            return ProbeResult(True, latency_ms)
        if self.keyword and self.keyword not in body:
            return ProbeResult(False, latency_ms, KEYWORD_MISSING)
        if self.absent_keyword and self.absent_keyword in body:
            return ProbeResult(False, latency_ms, KEYWORD_PRESENT)
        if self.json_path is not None:
            try:
                document = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                return ProbeResult(False, latency_ms, NOT_JSON)
            matches = self.json_path.find(document)
            if not matches:
                return ProbeResult(False, latency_ms, JSON_NO_MATCH)
            if not _equal(matches[0].value, self.json_equals):
                return ProbeResult(False, latency_ms, JSON_DIFFERS)
        return ProbeResult(True, latency_ms)


def _equal(found: Any, expected: Any) -> bool:
    """JSON equality without Python's True == 1; a string expectation also matches a number's JSON text
    ("200" equals 200), since forms and CSV give strings."""
    if isinstance(expected, bool) or isinstance(found, bool):
        return isinstance(found, bool) and isinstance(expected, bool) and found == expected
    if isinstance(expected, str):
        if isinstance(found, str):
            return found == expected
        return isinstance(found, int | float) and expected == json.dumps(found)
    return isinstance(expected, int | float) and isinstance(found, int | float) and found == expected


def conditions_of(options: dict[str, Any]) -> Conditions:
    """Conditions for one options object (ValueError when it is not a valid one)."""
    return _parse(json.dumps(options, sort_keys=True))


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Conditions:
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("http options must be an object")
    json_path = None
    if raw.get("json_path"):
        from jsonpath_ng import parse  # only devices with a JSON path need the parser

        try:
            json_path = parse(raw["json_path"])
        except Exception as exc:  # noqa: BLE001 - validated on save; a bad one fails its checks
            raise ValueError("invalid json_path") from exc
    body = raw.get("body")
    return Conditions(
        method=str(raw.get("method", "GET")),
        headers=tuple((str(k), str(v)) for k, v in dict(raw.get("headers", {})).items()),
        body=str(body).encode() if body else None,
        expected_status=tuple(raw.get("expected_status", ())),
        keyword=str(raw.get("keyword", "")).encode(),
        absent_keyword=str(raw.get("absent_keyword", "")).encode(),
        json_path=json_path,
        json_equals=raw.get("json_equals"),
    )


async def read_capped(content: Any, limit: int = MAX_BODY_READ) -> bytes | None:
    """Up to `limit` bytes of a response body stream; None when it holds more (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
