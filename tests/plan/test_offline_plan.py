"""The offline plan (`python -m deploy.plan`) for the committed dev and prod stacks.

It runs the real program under mocks, so these tests are also the end-to-end check that every
component wires together for both stacks without credentials.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.job_vars import JOB_NAMES
from deploy import plan
from deploy.mocks import (
    CLOUDFLARE_IPV4,
    CLOUDFLARE_IPV6,
    PlannedResource,
    committed_stack_config,
    load_stack_config_values,
)


@pytest.fixture(scope="module", params=["dev", "prod"])
def planned(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, int]:
    out = tmp_path_factory.mktemp(f"plan-{request.param}")
    rc = plan.main(["--stack", request.param, "--out", str(out)])
    return request.param, out, rc


def test_plan_succeeds_and_validates_its_artifacts(planned):
    stack, out, rc = planned
    assert rc == 0, "main() validates what it wrote and exits 1 on any problem"


def test_plan_writes_user_data_for_every_server(planned):
    stack, out, _ = planned
    config = committed_stack_config(stack)
    expected = {f"iot-{stack}-{i + 1}-{loc}.yaml" for i, loc in enumerate(config.cluster.locations)}
    expected |= {f"iot-{stack}-monitor-{m}.yaml" for m in config.monitor_names}
    assert {p.name for p in (out / "user-data").iterdir()} == expected
    for path in (out / "user-data").iterdir():
        assert path.read_text().startswith("#cloud-config")


def test_plan_writes_every_job_with_its_vars(planned):
    stack, out, _ = planned
    for job in JOB_NAMES:
        spec = (out / "jobs" / f"{job}.hcl").read_text()
        assert spec == (Path("jobs") / f"{job}.nomad.hcl").read_text()
        variables = json.loads((out / "jobs" / f"{job}.vars.json").read_text())
        assert variables["datacenters"]
    tracker = json.loads((out / "jobs" / "tracker.vars.json").read_text())
    assert tracker["count"] == str(committed_stack_config(stack).services["tracker"].count)


def test_plan_renders_traefik_static_config_with_the_cloudflare_ranges(planned):
    _, out, _ = planned
    static = yaml.safe_load((out / "jobs" / "traefik.rendered" / "secrets" / "traefik.yml").read_text())
    assert static["entryPoints"]["websecure"]["forwardedHeaders"]["trustedIPs"] == sorted(
        CLOUDFLARE_IPV4
    ) + sorted(CLOUDFLARE_IPV6)
    env = (out / "jobs" / "tracker.rendered" / "secrets" / "app.env").read_text()
    assert '{{ with nomadVar "nomad/jobs/tracker" }}' in env, "Nomad, not the plan, fills in the secrets"


def test_resources_md_groups_resources_by_component(planned):
    stack, out, _ = planned
    text = (out / "resources.md").read_text()
    for section in (
        "iot:secrets:ClusterSecrets",
        "iot:cluster:AppCluster",
        "iot:monitors:MonitorFleet",
        "iot:edge:Edge",
        "iot:workloads:NomadWorkloads",
    ):
        assert f"## {section}" in text
    assert "| hcloud Server | cluster-iot-" in text
    assert "location=fsn1" in text
    assert "| nomad Job | workloads-traefik |" in text


def test_edge_md_shows_hostnames_pools_and_origins(planned):
    stack, out, _ = planned
    text = (out / "edge.md").read_text()
    config = committed_stack_config(stack)
    domain = config.domain
    for host in (
        domain,
        f"*.{domain}",
        f"www.{domain}",
        f"tracker.{domain}",
        *(f"{m}.{domain}" for m in config.monitor_names),
    ):
        assert f"| {host} |" in text
    if config.edge.load_balancer:
        assert "Mode: Cloudflare Load Balancer." in text
        for loc in config.cluster.locations:
            assert f"| iot-{stack}-{loc} |" in text
    else:
        assert "no load balancer" in text and "## Pools" not in text


def test_no_secret_placeholder_leaks_into_any_artifact(planned):
    """Secret config values are visible placeholders; they must still never be written out in clear."""
    stack, out, _ = planned
    _, values, secret_keys = load_stack_config_values(stack)
    assert {"iot:databaseUrl", "iot:redisUrl", "hcloud:token", "cloudflare:apiToken"} <= set(secret_keys)
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for key in secret_keys:
                assert values[key] not in text, f"{key} in {path}"


def test_run_plan_returns_every_resource_with_inputs_and_parent():
    resources = plan.run_plan("dev")
    assert all(isinstance(r, PlannedResource) for r in resources)
    servers = [r for r in resources if r.type == "hcloud:index/server:Server"]
    assert servers and all(r.parent in ("cluster", "monitors") for r in servers)
    assert {r.inputs["location"] for r in servers if r.parent == "cluster"} == {"fsn1"}


def test_validation_reports_each_broken_artifact(tmp_path):
    broken = tmp_path / "plan"
    plan.write_artifacts(plan._cached_run("dev"), broken)
    user_data, secret_user_data = sorted((broken / "user-data").iterdir())[:2]
    user_data.write_text(user_data.read_text() + "\npackages: 5\n")
    secret_user_data.write_text("[secret]")  # how the mocks record user data a secret flowed into
    (broken / "jobs" / "docs.hcl").write_text('job "docs" {\n  group "docs" {\n')
    tracker_vars = broken / "jobs" / "tracker.vars.json"
    tracker_vars.write_text(json.dumps({**json.loads(tracker_vars.read_text()), "replicas": "3"}))
    traefik_spec = broken / "jobs" / "traefik.hcl"
    traefik_spec.write_text(
        traefik_spec.read_text().replace("yamlencode(local.tls_config)", '"tls: [unclosed"')
    )
    worker_vars = broken / "jobs" / "worker.vars.json"
    worker_vars.write_text(
        json.dumps({k: v for k, v in json.loads(worker_vars.read_text()).items() if k != "image"})
    )
    problems = plan.validate(broken)
    assert any(user_data.name in p and "cloud-init schema" in p for p in problems)
    assert any("docs.hcl" in p and "not valid HCL2" in p for p in problems)
    assert any("tracker.hcl" in p and "replicas" in p for p in problems)
    assert any("worker.hcl" in p and "image" in p for p in problems)
    assert any(secret_user_data.name in p and "a secret value went into user_data" in p for p in problems)
    assert any("traefik.hcl" in p and "secrets/dynamic/tls.yml is not valid YAML" in p for p in problems)
    assert len(problems) == 6


def test_plan_exits_non_zero_when_an_artifact_is_invalid(monkeypatch, tmp_path, capsys):
    real_write = plan.write_artifacts

    def write_then_break(run, out):
        written = real_write(run, out)
        written["user-data"][0].write_text("#cloud-config\nusers: 7\n")
        return written

    monkeypatch.setattr(plan, "write_artifacts", write_then_break)
    assert plan.main(["--stack", "dev", "--out", str(tmp_path / "out")]) == 1
    assert "FAIL user-data/" in capsys.readouterr().err


def test_plan_of_an_unknown_stack_names_the_committed_ones(capsys, tmp_path):
    assert plan.main(["--stack", "staging", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Pulumi.staging.yaml" in err and "dev, prod" in err
