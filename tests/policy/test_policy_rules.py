"""Each policy rule against one violating and one passing resource, plus the edge cases that matter."""

from __future__ import annotations

import base64

import pytest

from policy import iot_rules as r

CF = list(r.CLOUDFLARE_RANGES)
ADMIN = ["198.51.100.7/32"]


def server(**props):
    base = {"name": "iot-dev-1-fsn1", "location": "fsn1", "serverType": "cx23", "placementGroupId": 1011,
            "labels": {"app": "iot", "role": "cluster"}, "userData": "#cloud-config\nhostname: node\n"}
    return {**base, **props}


def hcloud_fw(*rules):
    return {"name": "iot-dev-cluster", "rules": [
        {"direction": "in", "protocol": proto, "port": port, "sourceIps": sources} for proto, port, sources in rules
    ]}


# (rule, resource type, violating props, passing props)
CASES = [
    (r.cluster_server_outside_eu, r.HCLOUD_SERVER, server(location="ash"), server(location="hel1")),
    (r.cluster_server_without_placement_group, r.HCLOUD_SERVER, server(placementGroupId=None), server()),
    (
        r.management_ports_open_to_world,
        r.HCLOUD_FIREWALL,
        hcloud_fw(("tcp", "22", ["0.0.0.0/0"])),
        hcloud_fw(("tcp", "22", ADMIN), ("tcp", "443", CF)),
    ),
    (
        r.web_ports_not_cloudflare_only,
        r.HCLOUD_FIREWALL,
        hcloud_fw(("tcp", "443", [*CF, "203.0.113.0/24"])),
        hcloud_fw(("tcp", "80", CF), ("tcp", "443", CF)),
    ),
    (
        r.proxied_hostname_not_proxied,
        r.CF_DNS_RECORD,
        {"name": "docs.my-iot-app.com", "type": "CNAME", "content": "my-iot-app.com", "proxied": False, "ttl": 1},
        {"name": "docs.my-iot-app.com", "type": "CNAME", "content": "my-iot-app.com", "proxied": True, "ttl": 1},
    ),
    (
        r.secret_in_user_data,
        r.HCLOUD_SERVER,
        server(userData="#cloud-config\nwrite_files:\n- content: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n"),
        server(userData="#cloud-config\nruncmd:\n- [systemctl, start, consul]\n"),
    ),
    (
        r.zone_tls_weakened,
        r.CF_ZONE_SETTING,
        {"zoneId": "z", "settingId": "ssl", "value": "flexible"},
        {"zoneId": "z", "settingId": "ssl", "value": "strict"},
    ),
    (
        r.nomad_job_without_purge,
        r.NOMAD_JOB,
        {"jobspec": "job \"docs\" {}", "detach": False},
        {"jobspec": "job \"docs\" {}", "detach": False, "purgeOnDestroy": True},
    ),
]


@pytest.mark.parametrize(("rule", "resource_type", "bad", "good"), CASES, ids=[c[0].__name__ for c in CASES])
def test_rule_flags_the_violating_resource_and_passes_the_good_one(rule, resource_type, bad, good):
    violations = rule(resource_type, bad)
    assert len(violations) >= 1 and all(isinstance(v, str) and v for v in violations)
    assert rule(resource_type, good) == []


def test_every_registered_rule_has_a_case():
    assert {fn for _, fn in r.RULES.values()} == {case[0] for case in CASES}


def test_rules_ignore_other_resource_types():
    for rule, _, bad, _ in CASES:
        assert rule("random:index/randomId:RandomId", bad) == []


def test_monitor_servers_may_run_outside_the_eu_without_placement_group():
    monitor = server(location="sin", placementGroupId=None, labels={"app": "iot", "role": "monitor"})
    assert r.cluster_server_outside_eu(r.HCLOUD_SERVER, monitor) == []
    assert r.cluster_server_without_placement_group(r.HCLOUD_SERVER, monitor) == []


def test_datacenter_instead_of_location_is_judged_by_its_location_prefix():
    assert r.cluster_server_outside_eu(r.HCLOUD_SERVER, server(location=None, datacenter="fsn1-dc14")) == []
    assert r.cluster_server_outside_eu(r.HCLOUD_SERVER, server(location=None, datacenter="ash-dc1"))


@pytest.mark.parametrize(
    ("port", "sources", "service"),
    [
        ("4646", ["0.0.0.0/0"], "Nomad"),
        ("4640-4650", ["::/0"], "Nomad"),
        ("8301", ["0.0.0.0/0", "::/0"], "Consul RPC/Serf"),
        ("8502", ["0.0.0.0/0"], "Consul HTTP/gRPC"),
        ("any", ["::/0"], "SSH"),
        ("8081", ["0.0.0.0/0"], "Traefik internal entrypoint"),
        (None, ["0.0.0.0/0"], "SSH"),
    ],
)
def test_management_ports_open_to_the_world_are_flagged(port, sources, service):
    violations = r.management_ports_open_to_world(r.HCLOUD_FIREWALL, hcloud_fw(("tcp", port, sources)))
    assert any(service in v for v in violations)


def test_management_port_open_to_world_over_udp_is_flagged_but_icmp_and_outbound_are_not():
    assert r.management_ports_open_to_world(r.HCLOUD_FIREWALL, hcloud_fw(("udp", "8301", ["0.0.0.0/0"])))
    icmp = {"rules": [{"direction": "in", "protocol": "icmp", "sourceIps": ["0.0.0.0/0"]}]}
    outbound = {"rules": [{"direction": "out", "protocol": "tcp", "port": "22", "destinationIps": ["0.0.0.0/0"]}]}
    assert r.management_ports_open_to_world(r.HCLOUD_FIREWALL, icmp) == []
    assert r.management_ports_open_to_world(r.HCLOUD_FIREWALL, outbound) == []


def test_linode_firewall_rules_and_accept_policy_are_checked():
    inbound = {"inboundPolicy": "DROP", "inbounds": [
        {"label": "ssh", "action": "ACCEPT", "protocol": "TCP", "ports": "22, 80", "ipv4s": ["0.0.0.0/0"]}
    ]}
    assert any("SSH" in v for v in r.management_ports_open_to_world(r.LINODE_FIREWALL, inbound))
    assert any("80" in v for v in r.web_ports_not_cloudflare_only(r.LINODE_FIREWALL, inbound))
    dropped = {"inboundPolicy": "DROP", "inbounds": [dict(inbound["inbounds"][0], action="DROP")]}
    assert r.management_ports_open_to_world(r.LINODE_FIREWALL, dropped) == []
    accept_all = {"inboundPolicy": "ACCEPT", "inbounds": []}
    assert r.management_ports_open_to_world(r.LINODE_FIREWALL, accept_all)


def test_web_ports_accept_subnets_of_cloudflare_and_honour_a_configured_list():
    narrower = hcloud_fw(("tcp", "443", ["104.16.0.0/16", "2606:4700:10::/48"]))
    assert r.web_ports_not_cloudflare_only(r.HCLOUD_FIREWALL, narrower) == []
    office = hcloud_fw(("tcp", "80", ["192.0.2.0/24"]))
    assert r.web_ports_not_cloudflare_only(r.HCLOUD_FIREWALL, office)
    assert r.web_ports_not_cloudflare_only(r.HCLOUD_FIREWALL, office, cloudflare_ranges=["192.0.2.0/23"]) == []


def test_web_ports_range_covering_443_is_checked():
    assert r.web_ports_not_cloudflare_only(r.HCLOUD_FIREWALL, hcloud_fw(("tcp", "400-500", ["0.0.0.0/0"])))


def test_unproxied_load_balancer_and_allowlisted_record():
    assert r.proxied_hostname_not_proxied(r.CF_LOAD_BALANCER, {"name": "my-iot-app.com", "proxied": False})
    assert r.proxied_hostname_not_proxied(r.CF_LOAD_BALANCER, {"name": "my-iot-app.com"})
    assert r.proxied_hostname_not_proxied(r.CF_LOAD_BALANCER, {"name": "my-iot-app.com", "proxied": True}) == []
    record = {"name": "direct.my-iot-app.com", "type": "A", "content": "192.0.2.1", "proxied": False}
    assert r.proxied_hostname_not_proxied(r.CF_DNS_RECORD, record)
    assert r.proxied_hostname_not_proxied(r.CF_DNS_RECORD, record, unproxied_hostnames=["direct.my-iot-app.com"]) == []
    txt = {"name": "_acme.my-iot-app.com", "type": "TXT", "content": "x", "proxied": False}
    assert r.proxied_hostname_not_proxied(r.CF_DNS_RECORD, txt) == []


@pytest.mark.parametrize(
    ("user_data", "what"),
    [
        ("write_files:\n- content: '-----BEGIN RSA PRIVATE KEY-----\nMIIE'\n", "a private key"),
        ("-----BEGIN EC PRIVATE KEY-----", "a private key"),
        ("environment:\n  DATABASE_URL: postgresql://iot:hunter2hunter2@db.example.com/iot\n", "a URL with a password"),
        ("runcmd:\n- redis-cli -u redis://:s3cretpass@redis.example.com:6379 ping\n", "a URL with a password"),
        ("write_files:\n- content: 'CONSUL_HTTP_TOKEN=9f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8'\n", "a token"),
        ('{"acl": {"tokens": {"initial_management": "x"}}, "encrypt": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="}',
         "a token"),
        ("runcmd:\n- curl -H 'Authorization: Bearer abcdefghijklmnop' https://api.example.com\n", "an Authorization"),
        ("runcmd:\n- git clone https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/x/y\n", "GitHub token"),
    ],
)
def test_secrets_in_user_data_are_found(user_data, what):
    violations = r.secret_in_user_data(r.HCLOUD_SERVER, server(userData=user_data))
    assert len(violations) == 1 and what in violations[0]


@pytest.mark.parametrize(
    "user_data",
    [
        "write_files:\n- path: /etc/consul.d/acl.json\n  content: '{\"token_file\": \"/etc/consul.d/agent-token\"}'\n",
        "runcmd:\n- [sh, -c, 'nomad acl bootstrap - < /run/iot/bootstrap-token']\n",
        "environment:\n  DATABASE_URL: ${DATABASE_URL}\n  NOMAD_TOKEN: $(cat /run/iot/nomad-token)\n",
        "apt:\n  sources:\n    hashicorp:\n      source: deb https://apt.releases.hashicorp.com $RELEASE main\n",
        "[secret]",
    ],
)
def test_user_data_that_only_points_at_secrets_passes(user_data):
    assert r.secret_in_user_data(r.HCLOUD_SERVER, server(userData=user_data)) == []


def test_linode_user_data_is_decoded_before_scanning():
    encoded = base64.b64encode(b"#cloud-config\nruncmd:\n- export NOMAD_TOKEN=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0\n")
    bad = {"region": "jp-tyo-3", "metadatas": [{"userData": encoded.decode()}]}
    assert r.secret_in_user_data(r.LINODE_INSTANCE, bad)
    clean = {"region": "jp-tyo-3", "metadatas": [{"userData": base64.b64encode(b"#cloud-config\n").decode()}]}
    assert r.secret_in_user_data(r.LINODE_INSTANCE, clean) == []


def test_nomad_job_with_purge_false_is_flagged():
    assert r.nomad_job_without_purge(r.NOMAD_JOB, {"purgeOnDestroy": False})


def test_evaluate_names_each_violated_rule():
    bad_server = server(location="sin", placementGroupId=None, userData="-----BEGIN PRIVATE KEY-----")
    assert set(r.evaluate(r.HCLOUD_SERVER, bad_server)) == {
        "cluster-servers-in-eu", "cluster-servers-in-placement-group", "no-secrets-in-user-data"}
    assert r.evaluate(r.HCLOUD_SERVER, server()) == {}


@pytest.mark.parametrize(
    ("setting", "value", "flagged"),
    [("ssl", "full", True), ("ssl", "off", True), ("ssl", "strict", False), ("tls_client_auth", "off", True),
     ("tls_client_auth", "on", False), ("min_tls_version", "1.0", False)],
)
def test_zone_tls_may_not_drop_below_strict_or_turn_origin_pulls_off(setting, value, flagged):
    violations = r.zone_tls_weakened(r.CF_ZONE_SETTING, {"settingId": setting, "value": value})
    assert bool(violations) is flagged
    if flagged:
        assert setting in violations[0]
