"""NomadWorkloads under Pulumi mocks: provider, Variables and Jobs it declares for the committed stacks.

Cluster, secrets and edge are small doubles carrying recognisable fake secrets, so the tests can
prove those values reach Nomad only as secret Variable items, never a job spec or its vars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import pulumi
import pulumi_random as random
import pytest
from jobs_support import FAKE_DATABASE_URL, FAKE_REDIS_URL, FAKE_SECRETS, stack_config, stack_vars

from components.job_vars import JOB_NAMES, SECRET_ITEMS, read_job_spec
from components.workloads import NomadWorkloads
from deploy.mocks import ProgramRun, committed_stack_config, run_program

FAKE_DEPLOYER = "FAKE-NOMAD-DEPLOYER-0b7d"
FAKE_CLIENT_KEY = "-----BEGIN PRIVATE KEY-----\nFAKE-CLIENT-KEY-77aa\n-----END PRIVATE KEY-----\n"
FAKE_CATALOG_TOKEN = "FAKE-CONSUL-CATALOG-TOKEN-31c4"
FAKE_ORIGIN_KEY = "-----BEGIN EC PRIVATE KEY-----\nFAKE-ORIGIN-KEY-e2f9\n-----END EC PRIVATE KEY-----\n"
ALL_FAKES = [
    FAKE_DATABASE_URL,
    FAKE_REDIS_URL,
    FAKE_DEPLOYER,
    FAKE_CLIENT_KEY,
    FAKE_CATALOG_TOKEN,
    FAKE_ORIGIN_KEY,
]
JOB = "nomad:index/job:Job"
VARIABLE = "nomad:index/variable:Variable"


@dataclass(frozen=True)
class Node:
    name: str
    location: str


def run_workloads(stack: str) -> ProgramRun:
    def program() -> None:
        config = committed_stack_config(stack, secrets=FAKE_SECRETS)
        ready = random.RandomUuid("cluster-ready")  # stands in for the readiness remote.Command
        secret = pulumi.Output.secret
        secrets = SimpleNamespace(
            ca_cert_pem=pulumi.Output.from_input(
                "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
            ),
            nomad_client_cert_pem=pulumi.Output.from_input("client cert"),
            nomad_client_key_pem=secret(FAKE_CLIENT_KEY),
            # No management (bootstrap) token here: NomadWorkloads must not need it.
            nomad_deployer_token=secret(FAKE_DEPLOYER),
            consul_catalog_token=secret(FAKE_CATALOG_TOKEN),
        )
        cluster = SimpleNamespace(
            nodes=[Node(f"n{i}", loc) for i, loc in enumerate(config.cluster.locations)],
            nomad_address=pulumi.Output.from_input("https://203.0.113.10:4646"),
            ready=ready,
        )
        edge = SimpleNamespace(
            origin_certificate=pulumi.Output.from_input("origin cert"),
            origin_private_key=secret(FAKE_ORIGIN_KEY),
        )
        NomadWorkloads("workloads", config, secrets=secrets, cluster=cluster, edge=edge)

    return run_program(stack, program=program)


@pytest.fixture(scope="module", params=["dev", "prod"])
def run(request: pytest.FixtureRequest) -> ProgramRun:
    return run_workloads(request.param)


def test_provider_uses_mtls_and_the_deployer_token_after_the_cluster_is_ready(run):
    (provider,) = run.of_type("pulumi:providers:nomad")
    assert provider.inputs["address"] == "https://203.0.113.10:4646"
    assert provider.inputs["caPem"].startswith("-----BEGIN CERTIFICATE-----")
    assert provider.inputs["certPem"] == "client cert"
    assert provider.inputs["keyPem"] == "[secret]" and provider.inputs["secretId"] == "[secret]"
    (ready,) = run.of_type("random:index/randomUuid:RandomUuid")
    assert ready.urn in provider.dependencies


def test_one_job_per_spec_file_with_vars_from_stack_config(run):
    jobs = {j.name: j for j in run.of_type(JOB)}
    assert set(jobs) == {f"workloads-{job}" for job in JOB_NAMES}
    expected_vars = stack_vars(run.stack)
    (provider,) = run.of_type("pulumi:providers:nomad")
    for job in JOB_NAMES:
        inputs = jobs[f"workloads-{job}"].inputs
        assert inputs["jobspec"] == read_job_spec(job)
        assert inputs["hcl2"] == {"vars": expected_vars[job], "allowFs": False}
        assert inputs["detach"] is False and inputs["purgeOnDestroy"] is True
        assert jobs[f"workloads-{job}"].provider.startswith(provider.urn)


def test_each_job_with_secrets_gets_its_own_secret_variable_first(run):
    variables = {v.inputs["path"]: v for v in run.of_type(VARIABLE)}
    assert set(variables) == {f"nomad/jobs/{job}" for job in SECRET_ITEMS}
    jobs = {j.name: j for j in run.of_type(JOB)}
    for job, keys in SECRET_ITEMS.items():
        variable = variables[f"nomad/jobs/{job}"]
        assert variable.inputs["items"] in ("[secret]", dict.fromkeys(keys, "[secret]"))
        assert variable.urn in jobs[f"workloads-{job}"].dependencies, f"{job} must start after its Variable"
    traefik_urn = jobs["workloads-traefik"].urn
    for job in JOB_NAMES[1:]:
        assert traefik_urn in jobs[f"workloads-{job}"].dependencies


def test_no_secret_value_is_visible_in_any_recorded_input(run):
    recorded = json.dumps([r.inputs for r in run.resources])
    for fake in ALL_FAKES:
        assert fake not in recorded
    jobs_text = json.dumps([j.inputs for j in run.of_type(JOB)])
    assert "FAKE-" not in jobs_text


def test_datacenters_are_the_cluster_locations(run):
    (traefik,) = [j for j in run.of_type(JOB) if j.name == "workloads-traefik"]
    locations = list(dict.fromkeys(stack_config(run.stack).cluster.locations))
    assert json.loads(traefik.inputs["hcl2"]["vars"]["datacenters"]) == locations
