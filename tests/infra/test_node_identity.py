"""A node's identity (server name, private IP, Pulumi URN) comes from its id, never its list position."""

from __future__ import annotations

import pytest

from infra.harness import ProgramRun, run_stack

SERVER = "hcloud:index/server:Server"
PROD_NODES = [{"id": 1, "location": "fsn1"}, {"id": 2, "location": "nbg1"}, {"id": 3, "location": "hel1"}]


def cluster(nodes: list[dict]) -> dict:
    return {"iot:cluster": {"serverType": "cpx22", "image": "debian-12", "nodes": nodes}}


def identities(run: ProgramRun) -> dict[str, tuple[str, str, str]]:
    """URN -> (server name, private IP, location) of every cluster server."""
    return {
        r.urn: (r.inputs["name"], r.inputs["networks"][0]["ip"], r.inputs["location"])
        for r in run.of_type(SERVER) if r.inputs["labels"].get("role") == "cluster"
    }


def test_committed_prod_nodes_keep_the_names_and_ips_they_had():
    # The ids in Pulumi.prod.yaml reproduce what `locations: [fsn1, nbg1, hel1]` created, so
    # migrating an existing stack renames, re-addresses and replaces nothing.
    names = sorted(identities(run_stack("prod")).values())
    assert names == [("iot-prod-1-fsn1", "10.0.1.11", "fsn1"), ("iot-prod-2-nbg1", "10.0.1.12", "nbg1"),
                     ("iot-prod-3-hel1", "10.0.1.13", "hel1")]
    assert {urn.rsplit("::", 1)[1] for urn in identities(run_stack("prod"))} == {
        "cluster-iot-prod-1-fsn1", "cluster-iot-prod-2-nbg1", "cluster-iot-prod-3-hel1"}


@pytest.mark.parametrize("order", [[2, 0, 1], [2, 1, 0]])
def test_reordering_nodes_changes_no_name_ip_or_urn(order):
    base = identities(run_stack("prod"))
    reordered = identities(run_stack("prod", cluster([PROD_NODES[i] for i in order])))
    assert reordered == base


def test_removing_a_node_leaves_the_others_untouched():
    five = PROD_NODES + [{"id": 4, "location": "fsn1"}, {"id": 5, "location": "nbg1"}]
    before = identities(run_stack("prod", cluster(five)))
    after = identities(run_stack("prod", cluster([five[0], five[2], five[4]])))
    assert set(after) < set(before)
    for urn, identity in after.items():
        assert before[urn] == identity
    assert sorted(name for name, _, _ in after.values()) == ["iot-prod-1-fsn1", "iot-prod-3-hel1", "iot-prod-5-nbg1"]
