"""Fixtures for the app tests: the apps as real `iot` processes against the real test servers.

- `tracker` (module scope): `iot tracker` on a free port with its own migrated database.
- `start_iot(...)`: start any `iot <command>` as a subprocess with env; stopped at test end.
- `simulator_factory(...)`: `iot simulate` with its control API ready.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from iot_processes import (
    Proc,
    Simulator,
    Tracker,
    iot_env,
    start_simulator,
    start_tracker,
)

from iot.db import create_pool
from iot.db.migrate import migrate

_db_names = itertools.count()


@pytest.fixture
def start_iot(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []
    counter = itertools.count()

    def start(*command: str, **env: str | int) -> Proc:
        log = tmp_path / f"{command[0]}-{next(counter)}.log"
        process = Proc(command[0], list(command), iot_env(**env), log).start()
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture
async def pool(database_url: str):
    """A pool on a fresh migrated database (for tests of repositories and the ingest writer)."""
    await migrate(database_url)
    pool = await create_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def tracker(postgres_server, redis_server, tmp_path_factory) -> Iterator[Tracker]:
    """One tracker process with its own migrated database, shared by a test module."""
    database_url = postgres_server.create_database(f"tracker_{os.getpid()}_{next(_db_names)}")
    asyncio.run(migrate(database_url))
    running = start_tracker(database_url, redis_server.url, tmp_path_factory.mktemp("tracker"))
    yield running
    running.process.stop()


@pytest.fixture
def simulator_factory(tmp_path: Path) -> Iterator[Callable[..., Simulator]]:
    """Start `iot simulate` processes for one test: factory(devices=, tcp_devices=, push_url=)."""
    started: list[Simulator] = []

    def start(devices: int = 10, tcp_devices: int = 0, push_url: str | None = None) -> Simulator:
        sim = start_simulator(tmp_path, devices, tcp_devices, push_url)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.process.stop()
