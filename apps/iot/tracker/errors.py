"""Error responses: every 4xx names the field and the reason, in one JSON shape.

    {"detail": "devices[3].target: required for kind 'http', ...",
     "errors": [{"field": "devices[3].target", "location": "body", "reason": "..."}]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from iot.errors import REFUSED_BY_DATABASE, Conflict, InputError, QuotaExceeded, refused_by_database
from iot.tracker.schemas import SHAPE_TAGS

LOCATIONS = ("body", "query", "path", "header", "cookie")


# A bare JSON list body is reported like its wrapped form: POST /v1/devices [..] -> devices[3].target.
LIST_NAMES = {"/v1/devices": "devices", "/v1/metrics": "points"}


def field_path(loc: Sequence[Any], list_name: str = "items") -> tuple[str, str | None]:
    """('body', 'list', 3, 'target') -> ('devices[3].target', 'body')."""
    parts = list(loc)
    location = parts.pop(0) if parts and parts[0] in LOCATIONS else None
    path = ""
    for part in parts:
        if part in SHAPE_TAGS:
            if part == "list":
                path += list_name
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or (location or "request"), location


def error_response(status: int, errors: list[dict[str, Any]]) -> JSONResponse:
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return JSONResponse({"detail": detail, "errors": errors}, status_code=status)


def _reason(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "json_invalid":
        ctx = err.get("ctx") or {}
        return f"request body is not valid JSON ({ctx.get('error', msg)})"
    if err.get("type") == "missing":
        return "field required"
    return msg


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for err in exc.errors():
        path, location = field_path(err.get("loc", ()), LIST_NAMES.get(request.url.path, "items"))
        errors.append({"field": path, "location": location, "reason": _reason(err)})
    return error_response(422, errors)


async def on_input_error(request: Request, exc: InputError) -> JSONResponse:
    status = 409 if isinstance(exc, Conflict) else 422
    return error_response(status, [{"field": exc.field, "location": "body", "reason": exc.reason}])


def body_refused(status: int, reason: str) -> JSONResponse:
    """A request body refused before parsing (413, 408), in the API's error shape."""
    return error_response(status, [{"field": "body", "location": "body", "reason": reason}])


async def on_quota_exceeded(request: Request, exc: QuotaExceeded) -> JSONResponse:
    response = error_response(429, [{"field": exc.field, "location": "body", "reason": exc.reason}])
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def on_refused_by_database(request: Request, exc: Exception) -> JSONResponse:
    return await on_input_error(request, refused_by_database(exc))  # type: ignore[arg-type]


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(InputError, on_input_error)  # type: ignore[arg-type]
    app.add_exception_handler(QuotaExceeded, on_quota_exceeded)  # type: ignore[arg-type]
    for refused in REFUSED_BY_DATABASE:
        app.add_exception_handler(refused, on_refused_by_database)
