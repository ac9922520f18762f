"""Fixtures of the job spec tests: parsed specs and the vars Pulumi passes for each committed stack."""

from __future__ import annotations

import pytest
from jobs_support import stack_vars

from components.job_spec import JobSpec, load_job_spec
from components.job_vars import JOB_NAMES, job_spec_path


@pytest.fixture(scope="session")
def specs() -> dict[str, JobSpec]:
    return {job: load_job_spec(job_spec_path(job)) for job in JOB_NAMES}


@pytest.fixture(scope="session", params=["dev", "prod"])
def stack(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def all_vars(stack: str) -> dict[str, dict[str, str]]:
    return stack_vars(stack)
