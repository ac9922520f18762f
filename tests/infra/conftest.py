"""Fixtures for the infrastructure tests: program runs under Pulumi mocks, shared per session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.harness import ProgramRun, run_stack


@pytest.fixture(scope="session")
def stack_runs() -> Callable[[str], ProgramRun]:
    """`stack_runs("prod")`: the committed stack run once under mocks, then reused."""
    cache: dict[str, ProgramRun] = {}

    def get(stack: str) -> ProgramRun:
        if stack not in cache:
            cache[stack] = run_stack(stack)
        return cache[stack]

    return get
