"""Property-based fuzzing of the tracker's own OpenAPI document with Schemathesis, against a real tracker
(real Postgres and Redis): valid and invalid requests for every operation, authenticated with the key each
operation wants and anonymously. Every answer must be a non-5xx that matches the documented schema.

Bounded: FUZZ_EXAMPLES (default 40) per operation, caller and mode (valid, invalid), and derandomized so
a failure here is reproducible; FUZZ_SEED=<n> explores other inputs (e.g. a longer local run).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from iot_processes import Tracker, start_tracker
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from iot.db.migrate import migrate
from iot.settings import TrackerSettings
from iot.tracker.app import create_app

# The document the fuzzer reads, built from the same code the tracker process runs (checked equal below).
DOCUMENT = create_app(TrackerSettings()).openapi()
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
SEED = os.environ.get("FUZZ_SEED")
CHECKS = (not_a_server_error, response_schema_conformance)
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=SEED is None,
    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
)


@dataclass
class Keys:
    """The bearer each kind of operation wants; kept current when the fuzzer rotates one."""

    admin: str
    tenant: str
    device: str

    def for_operation(self, path: str, tags: list[str]) -> str:
        if "admin" in tags:
            return self.admin
        if "ingest" in tags:
            return self.device
        return self.tenant


@pytest.fixture(scope="module")
def fuzzed(postgres_server, redis_server, tmp_path_factory) -> Iterator[tuple[Tracker, Keys]]:
    database_url = postgres_server.create_database(f"fuzz_{os.getpid()}")
    asyncio.run(migrate(database_url))
    tracker = start_tracker(database_url, redis_server.url, tmp_path_factory.mktemp("tracker"))
    tenant_key = tracker.create_tenant("fuzzed")
    # The device token belongs to another tenant, so fuzzed PATCH/DELETE calls cannot disable or delete it.
    with tracker.client(tracker.create_tenant("fuzz-devices")) as owner:
        token = owner.post("/v1/devices", json={"name": "meter", "kind": "push"}).json()["token"]
    yield tracker, Keys(tracker.admin_token, tenant_key, token)
    tracker.process.stop()
    log = tracker.process.log()
    assert "Traceback" not in log, f"the tracker logged an unhandled error:\n{log[-4000:]}"


def _operations() -> list:
    schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(path="/health")
    return [result.ok() for result in schema.get_all_operations()]


def _call(case, fuzzed, authorization: str | None) -> None:
    tracker, keys = fuzzed
    headers = {"Authorization": f"Bearer {authorization}"} if authorization else {}
    response = case.call(base_url=tracker.url, headers=headers, timeout=30)
    if response.status_code == 200 and case.operation.path == "/v1/tenant/api-key":
        keys.tenant = response.json()["api_key"]  # the fuzzer rotated the key it uses
    case.validate_response(response, checks=list(CHECKS))


def test_the_fuzzed_document_is_the_one_the_tracker_serves(fuzzed) -> None:
    tracker, _ = fuzzed
    with tracker.client() as client:
        assert client.get("/openapi.json").json() == DOCUMENT


@pytest.mark.parametrize("who", ["authenticated", "anonymous"])
@pytest.mark.parametrize("operation", _operations(), ids=lambda operation: operation.label)
def test_fuzz(operation, who: str, fuzzed) -> None:
    _, keys = fuzzed
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case) -> None:
            authorization = keys.for_operation(operation.path, operation.tags or []) if who == "authenticated" else None
            _call(case, fuzzed, authorization)

        (run if SEED is None else seed(int(SEED))(run))()
