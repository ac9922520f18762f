"""Day 2 under mocks: config edits reach running nodes, restarts roll node by node, servers stay.

Each scenario runs the real program twice (committed stack, then with one change) and compares what
`pulumi up` would send: a changed input is an update Pulumi performs on the next `up`.
"""

from __future__ import annotations

import json

import pytest

import cloud_init.cluster
from infra.harness import ProgramRun, run_stack

SERVER = "hcloud:index/server:Server"
COMMAND = "command:remote:Command"


def cluster_servers(run: ProgramRun):
    return [r for r in run.of_type(SERVER) if r.inputs["labels"].get("role") == "cluster"]


def commands(run: ProgramRun, suffix: str) -> dict[str, object]:
    """Cluster node command name (without the step suffix) -> its registration."""
    return {r.name.removesuffix(suffix): r for r in run.of_type(COMMAND)
            if r.name.startswith("cluster-iot-") and r.name.endswith(suffix)}


@pytest.fixture(scope="module")
def nomad_setting_added(stack_runs):
    """prod twice: as committed, and with one new Nomad agent setting (nomad.json content only)."""
    original = cloud_init.cluster.nomad_config

    def with_new_setting(spec):
        config = original(spec)
        config["client"]["gc_max_allocs"] = 300
        return config

    cloud_init.cluster.nomad_config = with_new_setting
    try:
        changed = run_stack("prod")
    finally:
        cloud_init.cluster.nomad_config = original
    return stack_runs("prod"), changed


def test_a_nomad_json_edit_changes_every_nodes_push_trigger(nomad_setting_added):
    before, after = nomad_setting_added
    old, new = commands(before, "-push"), commands(after, "-push")
    assert sorted(old) == sorted(new) and len(old) == 3
    for node in old:
        assert new[node].inputs["triggers"] != old[node].inputs["triggers"], node
        nomad_json = json.loads(bundle(new[node])["/etc/iot/nomad.d/nomad.json"]["content"])
        assert nomad_json["client"]["gc_max_allocs"] == 300  # the edit itself travels in the push


def with_named_ids(run: ProgramRun, value):
    """Inputs with mock ids (which depend on registration order) replaced by the resource they name."""
    names = {mock_id: urn.rsplit("::", 1)[1] for urn, mock_id in run.ids.items()}
    if isinstance(value, dict):
        return {k: with_named_ids(run, v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_named_ids(run, v) for v in value]
    if isinstance(value, float) and value.is_integer() and str(int(value)) in names:
        return f"<id of {names[str(int(value))]}>"
    if isinstance(value, str) and value in names:
        return f"<id of {names[value]}>"
    return value


def test_a_nomad_json_edit_replaces_no_server(nomad_setting_added):
    before, after = nomad_setting_added
    old = {r.urn: with_named_ids(before, r.inputs) for r in cluster_servers(before)}
    new = {r.urn: with_named_ids(after, r.inputs) for r in cluster_servers(after)}
    assert len(new) == 3
    assert new == old  # not even user data differs: nothing for Pulumi to update or replace


def test_a_nomad_json_edit_reaches_the_apply_and_gate_steps(nomad_setting_added):
    before, after = nomad_setting_added
    for suffix in ("-apply", "-gate"):
        old, new = commands(before, suffix), commands(after, suffix)
        assert len(old) == 3
        for node in old:
            assert new[node].inputs["triggers"] != old[node].inputs["triggers"], f"{node}{suffix}"


def bundle(cmd) -> dict[str, dict]:
    return {f["path"]: f for f in json.loads(cmd.inputs["stdin"])["files"]}


def node_id(name: str) -> int:
    return int(name.split("-")[3])  # cluster-iot-<stack>-<id>-<location>


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_restarts_form_a_chain_behind_health_gates(stack_runs, stack):
    run = stack_runs(stack)
    applies, gates, pushes = commands(run, "-apply"), commands(run, "-gate"), commands(run, "-push")
    assert len(applies) == len(gates) == len(cluster_servers(run))
    nodes = sorted(applies, key=node_id)
    assert nodes == sorted(gates, key=node_id)
    gate_urns = {gates[n].urn for n in nodes}
    previous = None
    for node in nodes:
        depends = set(applies[node].options["dependencies"])
        assert pushes[node].urn in depends, f"{node} applies before its files are pushed"
        if previous is None:
            assert not depends & gate_urns  # the first node waits for no other node
        else:
            assert previous.urn in depends, f"{node} does not wait for {previous.name}"
            assert depends & gate_urns == {previous.urn}
        assert applies[node].urn in gates[node].options["dependencies"]
        assert "iot-apply" in applies[node].inputs["create"] and "--start-only" not in applies[node].inputs["create"]
        assert gates[node].inputs["create"] == "/usr/local/sbin/iot-health-gate"
        previous = gates[node]
    # ACLs are upserted and every client awaited after the last node passed its gate.
    assert previous.urn in run.named("cluster-bootstrap").options["dependencies"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_only_the_chained_step_restarts_running_agents(stack_runs, stack):
    run = stack_runs(stack)
    for res in run.of_type(COMMAND):
        create = res.inputs.get("create") or ""
        if not res.name.startswith("cluster-iot-") or not create.startswith("/usr/local/sbin/iot-apply"):
            continue
        if res.name.endswith("-start"):
            # First start only: never re-run by a trigger, and it leaves running agents alone.
            assert "--start-only" in create and not res.inputs.get("triggers"), res.name
        else:
            assert res.name.endswith("-apply"), res.name
