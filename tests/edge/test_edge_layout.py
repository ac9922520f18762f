"""edge_layout: the pure hostname -> pool -> origin table the Edge component builds from."""

from __future__ import annotations

import pytest

from components.edge_layout import EXPLICIT_HOSTS, NodeRef, edge_layout, routed_hostnames

DOMAIN = "example.org"
NODES = [
    NodeRef("iot-prod-2-nbg1", "nbg1"),
    NodeRef("iot-prod-1-fsn1", "fsn1"),
    NodeRef("iot-prod-4-fsn1", "fsn1"),
]


def test_pools_follow_config_order_with_sorted_origins():
    layout = edge_layout(DOMAIN, NODES, ["tokyo"], load_balancer=True)
    assert [(p.location, p.origins) for p in layout.pools] == [
        ("nbg1", ("iot-prod-2-nbg1",)),
        ("fsn1", ("iot-prod-1-fsn1", "iot-prod-4-fsn1")),
    ]
    assert layout.host(DOMAIN).targets == ("nbg1", "fsn1")
    assert layout.host(f"*.{DOMAIN}").kind == "load_balancer"
    for label in EXPLICIT_HOSTS:
        assert (layout.host(f"{label}.{DOMAIN}").kind, layout.host(f"{label}.{DOMAIN}").targets) == (
            "cname",
            (DOMAIN,),
        )
    assert layout.host(f"tokyo.{DOMAIN}").targets == ("tokyo",)


def test_without_load_balancer_every_routed_host_points_at_every_node():
    layout = edge_layout(DOMAIN, NODES, ["tokyo"], load_balancer=False)
    assert layout.pools == ()
    routed = [h for h in layout.hosts if h.kind == "nodes"]
    assert [h.hostname for h in routed] == list(routed_hostnames(DOMAIN))
    assert all(h.targets == ("iot-prod-1-fsn1", "iot-prod-2-nbg1", "iot-prod-4-fsn1") for h in routed)


def test_same_hostnames_with_and_without_load_balancer():
    with_lb = {h.hostname for h in edge_layout(DOMAIN, NODES, ["a", "b"], True).hosts}
    without = {h.hostname for h in edge_layout(DOMAIN, NODES, ["a", "b"], False).hosts}
    assert with_lb == without


@pytest.mark.parametrize(
    ("nodes", "monitors", "message"),
    [
        ([], [], "at least one app node"),
        ([NodeRef("a", "fsn1"), NodeRef("a", "nbg1")], [], "duplicates"),
        (NODES, ["www"], "clash with fixed hostnames"),
    ],
)
def test_impossible_layouts_are_refused(nodes, monitors, message):
    with pytest.raises(ValueError, match=message):
        edge_layout(DOMAIN, nodes, monitors, load_balancer=True)


def test_the_worker_is_routed_internally_only_and_no_monitor_may_take_its_name():
    from components.edge_layout import INTERNAL_HOSTS, public_hostnames

    assert "worker" in INTERNAL_HOSTS and "worker" not in EXPLICIT_HOSTS
    assert f"worker.{DOMAIN}" not in public_hostnames(DOMAIN, ["tokyo"])
    with pytest.raises(ValueError, match="clash with fixed hostnames"):
        edge_layout(DOMAIN, NODES, ["worker"], load_balancer=False)


def test_a_stack_that_does_not_own_its_zone_publishes_no_monitor_host():
    from components.edge_layout import public_hostnames

    layout = edge_layout(DOMAIN, NODES, ["tokyo"], load_balancer=True, publish_monitors=False)
    assert not [h for h in layout.hosts if h.kind == "monitor"]
    assert f"tokyo.{DOMAIN}" not in public_hostnames(DOMAIN, ["tokyo"], publish_monitors=False)
    assert {h.hostname for h in layout.hosts} == set(public_hostnames(DOMAIN, ["tokyo"], publish_monitors=False))
