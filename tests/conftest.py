"""Fixtures shared by all tests: real Redis and PostgreSQL servers started on free ports."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import PostgresServer, RedisServer  # noqa: E402

# Every `iot` process a test starts inherits a key of its own for sealed secrets: the published defaults are
# refused by the tracker and the dashboard, as in production (tests of that refusal set SECRETS_KEY themselves).
os.environ.setdefault("SECRETS_KEY", Fernet.generate_key().decode())

_db_counter = itertools.count()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Give synchronous tests (and the fixtures they set up, whatever their scope) a current event loop.

    pytest-asyncio unsets the loop after each async test, and the Pulumi SDK (mocks, `@pulumi.runtime.test`,
    invokes) calls `asyncio.get_event_loop()`, so infra tests that run after app tests would fail.
    """
    if inspect.iscoroutinefunction(getattr(item, "function", None)):
        return
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def database_url(postgres_server) -> str:
    """A fresh, empty database for one test (run `iot migrate` or iot.db.migrate on it)."""
    return postgres_server.create_database(f"test_{next(_db_counter)}")


@pytest.fixture
def redis_url(redis_server) -> str:
    """The session Redis server, flushed for this test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url
