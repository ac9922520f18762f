"""What every repository shares: the executor type, a connection from it, page bounds and id checks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from iot.errors import InputError
from iot.inputs import id_problem

Executor = asyncpg.Connection | asyncpg.Pool

MAX_PAGE = 1000


@contextlib.asynccontextmanager
async def connection(db: Executor) -> AsyncIterator[asyncpg.Connection]:
    """One connection: `db` itself, or one borrowed from the pool for the block."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


def check_page_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InputError("limit", f"must be between 1 and {MAX_PAGE}")


def check_ids(**ids: int | None) -> None:
    for name, value in ids.items():
        if value is not None and id_problem(value):
            raise InputError(name, id_problem(value))
