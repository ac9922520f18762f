"""Errors the repositories raise for input the caller must fix; the HTTP layers map them to 4xx."""

import asyncpg


class InputError(ValueError):
    """`field` (a path like `devices[3].target`) is wrong for `reason`; the API answers 422."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Conflict(InputError):
    """The input clashes with existing data (a taken name or slug); the API answers 409."""


class QuotaExceeded(InputError):
    """The tenant is at a quota; the API answers 429 with `Retry-After: retry_after` seconds."""

    def __init__(self, field: str, reason: str, retry_after: int) -> None:
        super().__init__(field, reason)
        self.retry_after = max(1, int(retry_after))


# Values Postgres refuses (class 22 data exceptions: NUL in text, out of range, bad dates...; check and
# not-null constraints). Validation should catch each one first; these are the last line, answered as 422.
REFUSED_BY_DATABASE = (asyncpg.DataError, asyncpg.CheckViolationError, asyncpg.NotNullViolationError)


def refused_by_database(exc: asyncpg.PostgresError) -> InputError:
    """The InputError for a value Postgres refused, naming the column when Postgres says which one."""
    field = getattr(exc, "column_name", None)
    constraint = getattr(exc, "constraint_name", None) or ""
    table = getattr(exc, "table_name", None) or ""
    if not field and constraint:
        # Postgres names column checks <table>_<column>_check.
        field = constraint.removeprefix(f"{table}_").removesuffix("_check")
    # The message may quote the value (the caller's own input); keep it short.
    message = str(getattr(exc, "message", None) or exc).splitlines()[0][:160]
    return InputError(field or "request", f"the database cannot store this value ({message}); send a valid value")
