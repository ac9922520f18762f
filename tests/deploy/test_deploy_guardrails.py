"""Guardrail decisions from recorded engine events (no Pulumi CLI involved)."""

from __future__ import annotations

import pytest
from deploy_replay import load_events, raw_events
from pulumi.automation import EngineEvent

from deploy import guardrails


def test_nothing_to_do_is_no_change_and_not_guarded():
    events = load_events("preview_dev_no_changes")
    counts = guardrails.change_counts(events)
    assert set(counts) == {"same"} and counts["same"] > 30
    assert not guardrails.has_changes(counts)
    assert guardrails.guarded_changes(events) == []


def test_ordinary_updates_pass_the_guard():
    events = load_events("preview_dev_updates")
    counts = guardrails.change_counts(events)
    assert counts["update"] == 3 and counts["create"] == 1
    assert guardrails.has_changes(counts)
    assert guardrails.guarded_changes(events) == []
    assert guardrails.decide_up([], allow_replace=False).allowed


def test_replaced_server_is_guarded_once_with_the_property_that_forces_it():
    events = load_events("preview_prod_replace_server")
    guarded = guardrails.guarded_changes(events)
    assert [(c.op, c.type, c.name) for c in guarded] == [("replace", "hcloud:index/server:Server", "app-nbg1-1")]
    change = guarded[0]
    assert "`location`" in change.reason
    assert change.protect and "protect=True" in change.reason
    # The bootstrap command is replaced too, but it is not a protected kind.
    assert guardrails.change_counts(events)["replace"] == 2


def test_up_refuses_a_server_replacement_and_says_which_and_why():
    guarded = guardrails.guarded_changes(load_events("preview_prod_replace_server"))
    decision = guardrails.decide_up(guarded, allow_replace=False)
    assert not decision.allowed
    assert "app-nbg1-1" in decision.message and "`location` changed" in decision.message
    assert "--allow-replace" in decision.message


def test_allow_replace_lets_the_replacement_through_but_still_names_it():
    guarded = guardrails.guarded_changes(load_events("preview_prod_replace_server"))
    decision = guardrails.decide_up(guarded, allow_replace=True)
    assert decision.allowed and "app-nbg1-1" in decision.message


def test_deleted_network_and_subnet_are_guarded_but_a_deleted_job_is_not():
    guarded = guardrails.guarded_changes(load_events("preview_dev_delete_network"))
    assert {(c.op, c.name) for c in guarded} == {("delete", "cluster-network"), ("delete", "cluster-subnet")}
    assert all("no longer declares it" in c.reason for c in guarded)
    assert not guardrails.decide_up(guarded, allow_replace=False).allowed


def test_deleting_only_unprotected_kinds_is_allowed():
    events = load_events("preview_dev_delete_unguarded")
    assert guardrails.change_counts(events)["delete"] == 2
    assert guardrails.guarded_changes(events) == []
    assert guardrails.decide_up(guardrails.guarded_changes(events), allow_replace=False).allowed


def test_a_dns_record_moved_without_alias_is_refused_with_the_alias_hint():
    guarded = guardrails.guarded_changes(load_events("preview_prod_moved_dns_record"))
    assert [(c.op, c.name) for c in guarded] == [("delete", "dns-docs")]
    assert "aliases=" in guarded[0].reason


def test_pool_and_linode_replacements_are_guarded_with_their_keys():
    guarded = guardrails.guarded_changes(load_events("preview_prod_replace_pool_and_linode"))
    reasons = {c.type: c.reason for c in guarded}
    assert set(reasons) == {"cloudflare:index/loadBalancerPool:LoadBalancerPool", "linode:index/instance:Instance"}
    assert "`accountId`" in reasons["cloudflare:index/loadBalancerPool:LoadBalancerPool"]
    assert "`region`" in reasons["linode:index/instance:Instance"]


@pytest.mark.parametrize("resource_type", sorted(guardrails.PROTECTED_KINDS))
@pytest.mark.parametrize("op", ["replace", "create-replacement", "delete-replaced", "delete"])
def test_every_protected_kind_is_guarded_for_every_destructive_op(resource_type, op):
    urn = f"urn:pulumi:prod::iot::iot:x:Y${resource_type}::thing"
    event = EngineEvent.from_json(
        {"sequence": 1, "timestamp": 0, "resourcePreEvent": {"metadata": {"op": op, "urn": urn, "type": resource_type,
                                                                          "provider": ""}, "planning": True}}
    )
    guarded = guardrails.guarded_changes([event])
    assert [(c.name, c.op) for c in guarded] == [("thing", "delete" if op == "delete" else "replace")]
    assert not guardrails.decide_up(guarded, allow_replace=False).allowed


@pytest.mark.parametrize("op", ["same", "create", "update", "read", "refresh"])
def test_non_destructive_ops_on_protected_kinds_pass(op):
    urn = "urn:pulumi:prod::iot::hcloud:index/server:Server::app"
    event = EngineEvent.from_json(
        {"sequence": 1, "timestamp": 0, "resourcePreEvent": {"metadata": {"op": op, "urn": urn,
                                                                          "type": "hcloud:index/server:Server"}}}
    )
    assert guardrails.guarded_changes([event]) == []


def test_counts_fall_back_to_logical_steps_when_the_run_failed_before_its_summary():
    events = [EngineEvent.from_json(e) for e in raw_events("preview_prod_replace_server") if "summaryEvent" not in e]
    counts = guardrails.change_counts(events)
    assert counts["replace"] == 2
    assert "create-replacement" not in counts and "delete-replaced" not in counts


def test_mandatory_policy_violation_is_read_from_policy_events():
    violations = guardrails.policy_violations(load_events("preview_dev_policy_violation"))
    assert len(violations) == 1
    violation = violations[0]
    assert violation.policy == "no-world-open-management-ports" and violation.mandatory
    assert violation.urn.endswith("::cluster-firewall")
    assert guardrails.mandatory_violations(violations) == violations


def test_destroying_prod_needs_the_explicit_flag():
    refused = guardrails.decide_destroy("prod", yes_destroy_prod=False)
    assert not refused.allowed and "--yes-destroy-prod" in refused.message
    assert guardrails.decide_destroy("prod", yes_destroy_prod=True).allowed
    assert guardrails.decide_destroy("dev", yes_destroy_prod=False).allowed
