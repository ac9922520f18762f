"""The Edge component under Pulumi mocks: what Cloudflare gets for the committed dev and prod stacks.

App and monitor nodes are small doubles (name, location, public IP); the Cloudflare resources are
the real ones the component declares, recorded by deploy.mocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi.runtime.sync_await import _sync_await

from components.edge import TRAEFIK_PING_PORT, Edge
from components.edge_layout import EXPLICIT_HOSTS
from deploy.mocks import ProgramRun, committed_stack_config, fake_ipv4, run_program
from deploy.plan import run_plan

DOMAIN = "my-iot-app.com"  # prod; dev has its own domain and zone
DOMAINS = {"dev": "my-iot-app-dev.com", "prod": DOMAIN}
ZONES = {"dev": "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "prod": "fedcba9876543210fedcba9876543210"}


def fixed(domain: str) -> list[str]:
    return [domain, f"*.{domain}", *(f"{h}.{domain}" for h in EXPLICIT_HOSTS)]


FIXED = fixed(DOMAIN)
POOL = "cloudflare:index/loadBalancerPool:LoadBalancerPool"
LB = "cloudflare:index/loadBalancer:LoadBalancer"
RECORD = "cloudflare:index/dnsRecord:DnsRecord"
MONITOR = "cloudflare:index/loadBalancerMonitor:LoadBalancerMonitor"


@dataclass(frozen=True)
class Node:
    name: str
    location: str
    public_ipv4: pulumi.Output[str]


def node_names(stack: str, locations: Sequence[str]) -> list[tuple[str, str]]:
    return [(f"iot-{stack}-{i + 1}-{loc}", loc) for i, loc in enumerate(locations)]


def run_edge(stack: str, locations: Sequence[str] | None = None) -> tuple[ProgramRun, dict[str, Edge]]:
    built: dict[str, Edge] = {}

    def program() -> None:
        overrides = {}
        if locations is not None:
            overrides["cluster"] = {"serverType": "cpx22", "image": "debian-12",
                                    "nodes": [{"id": i + 1, "location": loc} for i, loc in enumerate(locations)]}
        config = committed_stack_config(stack, overrides=overrides)
        nodes = [
            Node(n, loc, pulumi.Output.from_input(fake_ipv4(n)))
            for n, loc in node_names(stack, config.cluster.locations)
        ]
        monitors = [
            Node(m.name, m.location, pulumi.Output.from_input(fake_ipv4(m.name, "198.51.100")))
            for m in config.monitors
        ]
        built["edge"] = Edge("edge", config, nodes, monitors)

    return run_program(stack, program=program), built


def records_by_name(run: ProgramRun) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in run.of_type(RECORD):
        out.setdefault(r.inputs["name"], []).append(r.inputs)
    return out


def test_prod_has_one_pool_per_location_with_its_nodes_sorted():
    run, _ = run_edge("prod")
    pools = {p.inputs["name"]: p.inputs for p in run.of_type(POOL)}
    assert set(pools) == {"iot-prod-fsn1", "iot-prod-nbg1", "iot-prod-hel1"}
    (monitor,) = run.of_type(MONITOR)
    for loc, (name, _) in zip(
        ["fsn1", "nbg1", "hel1"], node_names("prod", ["fsn1", "nbg1", "hel1"]), strict=True
    ):
        pool = pools[f"iot-prod-{loc}"]
        assert pool["origins"] == [{"name": name, "address": fake_ipv4(name), "enabled": True, "weight": 1}]
        assert pool["checkRegions"] == ["WEU", "EEU"]
        assert pool["accountId"] == "0123456789abcdef0123456789abcdef"
        assert pool["monitor"] == monitor.id


def test_more_nodes_mean_more_origins_in_their_location_pools_sorted():
    run, _ = run_edge("prod", ["fsn1", "nbg1", "hel1", "nbg1", "fsn1"])
    pools = {p.inputs["name"]: p.inputs for p in run.of_type(POOL)}
    assert sum(len(p["origins"]) for p in pools.values()) == 5
    fsn1 = [o["name"] for o in pools["iot-prod-fsn1"]["origins"]]
    assert fsn1 == sorted(["iot-prod-1-fsn1", "iot-prod-5-fsn1"])
    assert [o["name"] for o in pools["iot-prod-nbg1"]["origins"]] == ["iot-prod-2-nbg1", "iot-prod-4-nbg1"]
    baseline, _ = run_edge("prod")
    assert len(run.of_type(POOL)) == len(baseline.of_type(POOL))


def test_dev_with_two_more_locations_gets_two_more_plain_records_per_hostname():
    one, _ = run_edge("dev")
    three, _ = run_edge("dev", ["fsn1", "nbg1", "hel1"])
    for host in fixed(DOMAINS["dev"]):
        assert len(records_by_name(three)[host]) == len(records_by_name(one)[host]) + 2


def test_prod_load_balancers_cover_apex_and_wildcard_proxied_with_fallback():
    run, _ = run_edge("prod")
    lbs = {lb.inputs["name"]: lb.inputs for lb in run.of_type(LB)}
    assert set(lbs) == {DOMAIN, f"*.{DOMAIN}"}
    pool_ids = {p.inputs["name"]: p.id for p in run.of_type(POOL)}
    for lb in lbs.values():
        assert lb["proxied"] is True
        assert lb["steeringPolicy"] == "dynamic_latency"
        assert lb["zoneId"] == "fedcba9876543210fedcba9876543210"
        assert lb["defaultPools"] == [pool_ids[f"iot-prod-{loc}"] for loc in ("fsn1", "nbg1", "hel1")]
        assert lb["fallbackPool"] == pool_ids["iot-prod-fsn1"], (
            "the first configured location is the fallback"
        )


def test_prod_health_monitor_probes_traefik_ping():
    run, _ = run_edge("prod")
    (monitor,) = run.of_type(MONITOR)
    assert monitor.inputs["port"] == TRAEFIK_PING_PORT == 8082
    assert (monitor.inputs["path"], monitor.inputs["type"], monitor.inputs["expectedCodes"]) == (
        "/ping",
        "http",
        "200",
    )
    assert monitor.inputs["accountId"] == "0123456789abcdef0123456789abcdef"


def test_prod_fixed_hosts_alias_the_balanced_apex():
    run, _ = run_edge("prod")
    records = records_by_name(run)
    for host in EXPLICIT_HOSTS:
        (record,) = records[f"{host}.{DOMAIN}"]
        assert (record["type"], record["content"], record["proxied"]) == ("CNAME", DOMAIN, True)
    assert DOMAIN not in records and f"*.{DOMAIN}" not in records, "apex and * are load balancers"


def test_each_monitor_has_its_own_record_to_its_node():
    for stack in ("dev", "prod"):
        run, _ = run_edge(stack)
        records = records_by_name(run)
        config_monitors = committed_stack_config(stack).monitor_names
        domain = DOMAINS[stack]
        for name in config_monitors:
            (record,) = records[f"{name}.{domain}"]
            assert (record["type"], record["content"], record["proxied"]) == (
                "A",
                fake_ipv4(name, "198.51.100"),
                True,
            )
        (ruleset,) = [r for r in run.of_type("cloudflare:index/ruleset:Ruleset")
                      if r.inputs["phase"] == "http_config_settings"]
        (rule,) = ruleset.inputs["rules"]
        assert rule["actionParameters"] == {"ssl": "flexible"}
        assert all(f'"{name}.{domain}"' in rule["expression"] for name in config_monitors)
        assert f'"{domain}"' not in rule["expression"], "only monitor hosts may downgrade to HTTP"


def test_dev_without_load_balancer_gets_plain_records_for_the_same_hostnames():
    run, _ = run_edge("dev")
    assert not run.of_type(LB) and not run.of_type(POOL) and not run.of_type(MONITOR)
    records = records_by_name(run)
    ((node, _),) = node_names("dev", ["fsn1"])
    dev_domain = DOMAINS["dev"]
    for host in fixed(dev_domain):
        (record,) = records[host]
        assert (record["type"], record["content"], record["proxied"]) == ("A", fake_ipv4(node), True)
    prod, _ = run_edge("prod")
    prod_hosts = set(records_by_name(prod)) | {lb.inputs["name"] for lb in prod.of_type(LB)}
    prod_monitors = {f"{m}.{DOMAIN}" for m in committed_stack_config("prod").monitor_names}
    dev_monitors = {f"{m}.{dev_domain}" for m in committed_stack_config("dev").monitor_names}
    assert prod_hosts - prod_monitors == set(FIXED)
    assert set(records) - dev_monitors == set(fixed(dev_domain)), "same hostnames, in dev's own domain"


def test_every_dns_record_has_a_ttl():
    for stack in ("dev", "prod"):
        run, _ = run_edge(stack)
        assert run.of_type(RECORD)
        for record in run.of_type(RECORD):
            assert record.inputs["ttl"] == 1, record.name
            assert record.inputs["zoneId"] == ZONES[stack]


def test_origin_certificate_covers_apex_and_one_level_and_ssl_is_strict():
    run, built = run_edge("prod")
    (cert,) = run.of_type("cloudflare:index/originCaCertificate:OriginCaCertificate")
    assert cert.inputs["hostnames"] == [DOMAIN, f"*.{DOMAIN}"]
    assert cert.inputs["requestType"] == "origin-ecc"
    (csr,) = run.of_type("tls:index/certRequest:CertRequest")
    assert csr.inputs["dnsNames"] == [DOMAIN, f"*.{DOMAIN}"]
    assert csr.inputs["privateKeyPem"] == "[secret]"
    settings = {z.inputs["settingId"]: z.inputs["value"] for z in run.of_type("cloudflare:index/zoneSetting:ZoneSetting")}
    assert settings["ssl"] == "strict"
    edge = built["edge"]
    assert _sync_await(edge.origin_private_key.is_secret())
    assert "BEGIN CERTIFICATE" in _sync_await(edge.origin_certificate.future())


def test_all_edge_resources_are_children_of_the_component():
    run, _ = run_edge("prod")
    (component,) = run.of_type("iot:edge:Edge")
    others = [r for r in run.resources if r is not component]
    assert others and all(r.parent == component.name for r in others)


def test_the_real_program_puts_every_cluster_server_in_a_pool_and_every_monitor_in_dns():
    """Integration with AppCluster/MonitorFleet: the committed prod stack, run whole under mocks."""
    resources = run_plan("prod")
    servers = {
        r.inputs["name"]: r.outputs["ipv4Address"]
        for r in resources
        if r.type == "hcloud:index/server:Server" and r.parent == "cluster"
    }
    origins = {o["name"]: o["address"] for r in resources if r.type == POOL for o in r.inputs["origins"]}
    assert len(servers) == 3 and origins == servers
    monitor_ips = {
        r.inputs["name"].removeprefix("iot-prod-monitor-"): r.outputs["ipv4Address"]
        for r in resources
        if r.type == "hcloud:index/server:Server" and r.parent == "monitors"
    }
    monitor_ips |= {
        r.inputs["label"].removeprefix("iot-prod-monitor-"): r.outputs["ipAddress"]
        for r in resources
        if r.type == "linode:index/instance:Instance"
    }
    records = {r.inputs["name"]: r.inputs["content"] for r in resources if r.type == RECORD}
    assert set(monitor_ips) == set(committed_stack_config("prod").monitor_names)
    for name, ip in monitor_ips.items():
        assert records[f"{name}.{DOMAIN}"] == ip
