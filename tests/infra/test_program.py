"""The Pulumi program under mocks, for both committed stack files: what `pulumi up` would create."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from components.cluster import server_type_problem
from components.config import ConfigError
from components.firewall import ADMIN_PORTS, CLUSTER_PORTS, WORLD
from infra.harness import (
    CLOUDFLARE_V4,
    CLOUDFLARE_V6,
    FAKE_SECRETS,
    SECRET_SIG,
    SECRET_SIG_KEY,
    Registration,
    run_stack,
)

SERVER = "hcloud:index/server:Server"
LINODE = "linode:index/instance:Instance"
COMMAND = "command:remote:Command"
CLOUDFLARE = sorted(CLOUDFLARE_V4) + sorted(CLOUDFLARE_V6)
ADMIN = ["198.51.100.7/32"]
OWN_COMPONENTS = ("iot:cluster:AppCluster", "iot:monitors:MonitorFleet", "iot:secrets:ClusterSecrets")


@pytest.fixture(params=["dev", "prod"])
def run(request, stack_runs):
    return stack_runs(request.param)


def cluster_servers(run):
    """Cluster servers in node order (names carry the index: cluster-iot-<stack>-<n>-<location>)."""
    return sorted((r for r in run.of_type(SERVER) if r.name.startswith("cluster-")), key=lambda r: r.name)


def monitor_servers(run):
    return [r for r in run.resources if r.type in (SERVER, LINODE) and r.name.startswith("monitors-")]


def own(run) -> list[Registration]:
    return [r for r in run.resources if any(f"::{c}$" in r.urn or r.type == c for c in OWN_COMPONENTS)]


def test_dev_has_one_node_and_two_eu_monitors(stack_runs):
    run = stack_runs("dev")
    assert [(s.inputs["location"], s.inputs["serverType"]) for s in cluster_servers(run)] == [("fsn1", "cx23")]
    assert {s.name: s.inputs["location"] for s in monitor_servers(run)} == {
        "monitors-frankfurt": "fsn1", "monitors-helsinki": "hel1"}
    assert run.of_type(LINODE) == []


def test_prod_has_three_eu_nodes_and_six_monitors_with_tokyo_on_linode(stack_runs):
    run = stack_runs("prod")
    assert sorted(s.inputs["location"] for s in cluster_servers(run)) == ["fsn1", "hel1", "nbg1"]
    hetzner = {s.name: s.inputs["location"] for s in run.of_type(SERVER) if s.name.startswith("monitors-")}
    assert hetzner == {"monitors-ashburn": "ash", "monitors-hillsboro": "hil", "monitors-helsinki": "hel1",
                       "monitors-singapore": "sin", "monitors-frankfurt": "fsn1"}
    (tokyo,) = run.of_type(LINODE)
    assert (tokyo.name, tokyo.inputs["region"], tokyo.inputs["type"]) == ("monitors-tokyo", "jp-tyo-3", "g6-nanode-1")
    assert list(run.outputs["monitors"]) == ["ashburn", "hillsboro", "helsinki", "singapore", "tokyo", "frankfurt"]
    assert run.outputs["monitors"]["tokyo"]["provider"] == "linode"


def test_cluster_nodes_have_fixed_private_ips_on_the_eu_central_subnet(run):
    (subnet,) = run.of_type("hcloud:index/networkSubnet:NetworkSubnet")
    assert (subnet.inputs["networkZone"], subnet.inputs["ipRange"], subnet.inputs["type"]) == (
        "eu-central", "10.0.1.0/24", "cloud")
    ips = [s.inputs["networks"][0]["ip"] for s in cluster_servers(run)]
    assert ips == [f"10.0.1.{11 + i}" for i in range(len(ips))]
    (group,) = run.of_type("hcloud:index/placementGroup:PlacementGroup")
    assert group.inputs["type"] == "spread"
    assert all(s.inputs["placementGroupId"] == float(group_id(run, group)) for s in cluster_servers(run))


def group_id(run, registration) -> str:
    return run.ids[registration.urn]


def test_servers_use_location_never_datacenter_and_survive_user_data_edits(run):
    for server in run.of_type(SERVER):
        assert "datacenter" not in server.inputs, server.name
        assert server.inputs["location"]
        assert {"userData", "image", "sshKeys"} <= set(server.options["ignoreChanges"]), server.name
        assert server.inputs["firewallIds"], f"{server.name} has no firewall"
        assert server.inputs["sshKeys"], server.name
    for instance in run.of_type(LINODE):
        assert {"metadatas", "image", "authorizedKeys"} <= set(instance.options["ignoreChanges"])


def test_prod_protects_servers_and_network_dev_does_not(stack_runs):
    prod, dev = stack_runs("prod"), stack_runs("dev")
    for res in prod.of_type(SERVER) + prod.of_type(LINODE) + prod.of_type("hcloud:index/network:Network"):
        assert res.options["protect"] is True, res.name
    for res in prod.of_type(SERVER):
        assert res.inputs["deleteProtection"] is True and res.inputs["rebuildProtection"] is True
    for res in dev.of_type(SERVER) + dev.of_type("hcloud:index/network:Network"):
        assert res.options["protect"] is False, res.name


def firewall_rules(run) -> list[tuple[str, str, str, list[str]]]:
    """(firewall, protocol, port, sources) for every inbound rule, Hetzner and Linode alike."""
    rules = []
    for fw in run.of_type("hcloud:index/firewall:Firewall"):
        for rule in fw.inputs["rules"]:
            assert rule["direction"] == "in"
            rules.append((fw.name, rule["protocol"], rule["port"], rule["sourceIps"]))
    for fw in run.of_type("linode:index/firewall:Firewall"):
        assert fw.inputs["inboundPolicy"] == "DROP"
        for rule in fw.inputs["inbounds"]:
            rules.append((fw.name, rule["protocol"].lower(), rule["ports"], rule.get("ipv4s", []) + rule.get("ipv6s", [])))
    return rules


def test_no_rule_opens_admin_or_cluster_ports_to_the_world(run):
    rules = firewall_rules(run)
    assert rules
    for name, _, port, sources in rules:
        if port in ADMIN_PORTS + CLUSTER_PORTS:
            assert not WORLD & set(sources), f"{name} opens {port} to the world"
        assert not {"0.0.0.0/0", "::/0"} & set(sources), f"{name} opens {port} to the world"


def test_web_only_from_cloudflare_and_admin_only_from_admin_cidrs(run):
    by_port: dict[str, list[list[str]]] = {}
    for _, protocol, port, sources in firewall_rules(run):
        assert protocol == "tcp"
        by_port.setdefault(port, []).append(sorted(sources))
    assert set(by_port) == {"80", "443", "8082", "22", "4646"}
    assert all(s == sorted(CLOUDFLARE) for s in by_port["80"] + by_port["443"] + by_port["8082"])
    assert all(s == ADMIN for s in by_port["22"] + by_port["4646"])
    cluster_fw = [r for r in firewall_rules(run) if r[0] == "cluster-firewall"]
    assert sorted(r[2] for r in cluster_fw) == ["22", "443", "4646", "80", "8082"]
    monitor_ports = sorted(r[2] for r in firewall_rules(run) if "monitor" in r[0] or r[0].startswith("monitors"))
    assert set(monitor_ports) == {"22", "80"}  # monitors: health from Cloudflare, SSH from admins, nothing else


def test_linode_monitor_is_behind_its_firewall(stack_runs):
    run = stack_runs("prod")
    (fw,) = run.of_type("linode:index/firewall:Firewall")
    (tokyo,) = run.of_type(LINODE)
    assert tokyo.inputs["firewallId"] == float(run.ids[fw.urn])  # attached at creation, never open


def _strings_outside_secrets(value, path="") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return []
        return [hit for k, v in value.items() for hit in _strings_outside_secrets(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in _strings_outside_secrets(v, f"{path}[{i}]")]
    return [(path, value)] if isinstance(value, str) else []


def _fragments(run) -> set[str]:
    return run.secret_fragments()


def test_every_secret_value_is_marked_secret_wherever_it_flows(run):
    fragments = _fragments(run)
    assert len(fragments) >= 10
    for res in run.resources:
        for path, text in _strings_outside_secrets(res.raw_inputs):
            leaked = [f for f in fragments if f in text]
            assert not leaked, f"{res.name}{path} carries a secret in plain text"
    for name, value in run.outputs.items():
        if any(f in json.dumps(value) for f in fragments):
            assert name in run.secret_outputs, f"export {name} holds a secret but is not marked secret"
    assert {"sshPrivateKey", "nomadClientKeyPem", "nomadToken"} <= run.secret_outputs


def test_exported_nomad_token_is_the_operator_token_not_management(run):
    tokens = run.named("cluster-bootstrap").inputs["stdin"].splitlines()
    management, operator_secret = tokens[4], tokens[8]
    assert run.outputs["nomadToken"] == operator_secret != management
    for name in ("cluster-iot-", ):
        pushes = [c for c in run.of_type(COMMAND) if c.name.startswith(name) and c.name.endswith("-push")]
        for push in pushes:  # the management token stays on the nodes, for on-node tools
            assert bundle(push)["/etc/iot/tokens/nomad-management"]["content"] == management + "\n"


def test_generated_credentials_are_registered_as_secret_outputs(run):
    # RandomUuid/RandomId keep their value as the resource ID, which Pulumi cannot encrypt.
    assert not run.of_type("random:index/randomUuid:RandomUuid")
    assert not run.of_type("random:index/randomId:RandomId")
    generated = run.of_type("random:index/randomBytes:RandomBytes")
    assert len(generated) >= 7  # 5 ACL tokens + 2 gossip keys
    for res in generated:
        assert {"base64", "hex"} <= set(res.options["additionalSecretOutputs"]), res.name
    for res in run.of_type(COMMAND):
        if "stdin" in res.inputs:
            assert {"stdout", "stderr"} <= set(res.options["additionalSecretOutputs"]), res.name


def test_secrets_reach_hosts_only_through_command_stdin(run):
    fragments = _fragments(run)
    carriers = set()
    for res in own(run):
        for key, value in res.inputs.items():
            if any(f in json.dumps(value) for f in fragments):
                carriers.add((res.type, key))
    allowed = {(COMMAND, "stdin"), (COMMAND, "connection"),  # the SSH key that opens the connection
               ("tls:index/certRequest:CertRequest", "privateKeyPem"),
               ("tls:index/selfSignedCert:SelfSignedCert", "privateKeyPem"),
               ("tls:index/locallySignedCert:LocallySignedCert", "caPrivateKeyPem")}
    assert carriers <= allowed, carriers - allowed
    assert (COMMAND, "stdin") in carriers
    for res in run.of_type(COMMAND):
        if "stdin" in res.inputs:
            assert res.input_is_secret("stdin") and res.inputs["logging"] == "none", res.name
        for key in ("create", "update", "triggers", "environment"):
            assert not any(f in json.dumps(res.inputs.get(key)) for f in fragments), f"{res.name}.{key}"


def test_remote_commands_wait_for_fresh_servers_and_die_with_them(run):
    servers = {r.urn for r in run.of_type(SERVER) + run.of_type(LINODE)}
    commands = run.of_type(COMMAND)
    assert commands
    leaves = []
    for cmd in commands:
        assert cmd.options["customTimeouts"]["create"], cmd.name
        if cmd.inputs.get("delete"):
            # The leave step must run while its server still exists: it is not deleted with it.
            leaves.append(cmd)
            assert cmd.options["deletedWith"] == "", cmd.name
            assert cmd.inputs["connection"]["dialErrorLimit"] > 0, "a dead node must not block its removal forever"
            continue
        assert cmd.inputs["connection"]["dialErrorLimit"] == -1, cmd.name
        assert cmd.options["deletedWith"] in servers, cmd.name
    assert len(leaves) == len(cluster_servers(run))
    assert all(c.inputs["delete"] == "/usr/local/sbin/iot-node-leave" for c in leaves)
    waits = [c for c in commands if c.name.endswith("wait-cloud-init")]
    assert len(waits) == len(servers)
    assert all(c.inputs["create"].startswith("cloud-init status --wait >/dev/null || test $? -eq 2 ||") for c in waits)


def test_bootstrap_runs_after_the_last_health_gate_with_tokens_on_stdin(run):
    bootstrap = run.named("cluster-bootstrap")
    gates = sorted((c for c in run.of_type(COMMAND) if c.name.endswith("-gate")), key=lambda c: c.name)
    assert len(gates) == len(cluster_servers(run))
    last = max(gates, key=lambda c: int(c.name.split("-")[3]))
    assert last.urn in bootstrap.options["dependencies"]
    assert bootstrap.inputs["create"] == f"/usr/local/sbin/iot-cluster-bootstrap {len(gates)}"
    tokens = bootstrap.inputs["stdin"].splitlines()
    assert len(tokens) == 9 and all(t.startswith("fa4e5ec7-") for t in tokens)
    assert len(set(tokens)) == 9
    assert bootstrap.inputs["triggers"]  # re-runs after every rollout
    assert bootstrap.options["deletedWith"] == cluster_servers(run)[0].urn


def bundle(cmd: Registration) -> dict[str, dict]:
    return {f["path"]: f for f in json.loads(cmd.inputs["stdin"])["files"]}


def test_cluster_push_delivers_configs_tls_gossip_and_tokens(run):
    pushes = [c for c in run.of_type(COMMAND) if c.name.startswith("cluster-") and c.name.endswith("-push")]
    assert len(pushes) == len(cluster_servers(run))
    for cmd in pushes:
        files = bundle(cmd)
        gossip = json.loads(files["/etc/iot/consul.d/secrets.json"]["content"])
        tokens = json.loads(files["/etc/iot/consul.d/acl-tokens.json"]["content"])
        nomad = json.loads(files["/etc/iot/nomad.d/secrets.json"]["content"])
        assert gossip["encrypt"] and tokens["acl"]["tokens"]["initial_management"].startswith("fa4e5ec7-")
        assert nomad["server"]["encrypt"] and nomad["consul"]["token"].startswith("fa4e5ec7-")
        for path, entry in files.items():
            if path.endswith(("key.pem", "secrets.json", "acl-tokens.json")) or "/tokens/" in path:
                assert entry["mode"] == "0600", path
        assert "FAKE-PRIVATE-KEY" in files["/etc/iot/nomad.d/tls/node-key.pem"]["content"]
        # Everything that may change after first boot travels here, not in user data.
        for path in ("/etc/iot/consul.d/consul.json", "/etc/iot/nomad.d/nomad.json",
                     "/etc/systemd/system/consul.service.d/10-iot.conf", "/etc/iot/consul-policies/agent.json",
                     "/etc/iot/nomad-policies/deployer.hcl", "/usr/local/sbin/iot-cluster-bootstrap",
                     "/usr/local/sbin/iot-health-gate", "/usr/local/sbin/iot-block-metadata"):
            assert path in files, path
        # A certificate change is a reload, a new agent setting a restart.
        assert files["/etc/iot/nomad.d/tls/node.pem"]["on_change"] == ["reload:nomad.service"]
        assert files["/etc/iot/consul.d/acl-tokens.json"]["on_change"] == ["reload:consul.service"]
        assert files["/etc/iot/nomad.d/nomad.json"]["on_change"] == ["restart:nomad.service"]


def test_monitor_env_file_is_private_and_complete(run):
    names = list(run.outputs["monitors"])
    pushes = [c for c in run.of_type(COMMAND) if c.name.startswith("monitors-") and c.name.endswith("-push")]
    assert len(pushes) == len(names)
    for cmd in pushes:
        region = cmd.name.removeprefix("monitors-").removesuffix("-push")
        files = bundle(cmd)
        env = dict(line.split("=", 1) for line in files["/etc/iot/monitor.env"]["content"].splitlines())
        assert files["/etc/iot/monitor.env"]["mode"] == "0600"
        assert files["/etc/iot/monitor.env"]["on_change"] == ["restart:iot-monitor.service"]
        assert env["REGION"] == region
        assert env["REDIS_URL"] == FAKE_SECRETS["iot:redisUrl"]
        assert env["MONITOR_NAMES"].split(",") == names
        assert "DATABASE_URL" not in env  # monitors only talk to Redis
        image = files["/etc/iot/monitor-image.env"]["content"]
        assert image == f"IOT_MONITOR_IMAGE={run.outputs['images']['app']}\n"
        # dev may follow a tag on manual deploys; protected prod only ever runs a digest.
        assert image.endswith(":latest\n") if run.stack == "dev" else "@sha256:" in image
        assert "/etc/systemd/system/iot-monitor.service" in files  # the unit is pushed, not in user data


def test_components_use_iot_type_tokens_and_parent_their_children(run):
    types = {r.type for r in run.resources}
    assert set(OWN_COMPONENTS) <= types
    for res in run.resources:
        if res.custom and not res.type.startswith("pulumi:providers:"):
            parent_type = res.parent.split("::")[2].split("$")[-1] if res.parent else ""
            assert parent_type.startswith("iot:"), f"{res.name} is not a child of an iot:* component"


def test_exports_give_operators_what_they_need(run):
    nodes = run.outputs["nodes"]
    assert len(nodes) == len(cluster_servers(run))
    first = next(iter(nodes.values()))
    assert run.outputs["nomadAddress"] == f"https://{first['publicIpv4']}:4646"
    assert all(n["privateIp"].startswith("10.0.1.") for n in nodes.values())
    domain = {"dev": "my-iot-app-dev.com", "prod": "my-iot-app.com"}[run.stack]  # each stack its own zone
    for name, monitor in run.outputs["monitors"].items():
        assert monitor["hostname"] == f"{name}.{domain}"
        assert monitor["publicIpv4"]


def test_invalid_config_fails_before_any_resource():
    with pytest.raises(ConfigError, match="odd number"):
        run_stack("dev", overrides={"iot:cluster": {"serverType": "cx23", "nodes": [
            {"id": 1, "location": "fsn1"}, {"id": 2, "location": "nbg1"}]}})


def test_image_tag_override_reaches_monitors():
    run = run_stack("dev", overrides={"iot:imageTag": "3f2c1ab"})
    push = run.named("monitors-frankfurt-push")
    assert bundle(push)["/etc/iot/monitor-image.env"]["content"] == "IOT_MONITOR_IMAGE=ghcr.io/my-iot-app/iot:3f2c1ab\n"


def test_server_type_availability_is_checked_against_the_api():
    loc = lambda name, available=True: SimpleNamespace(name=name, available=available, is_deprecated=False)  # noqa: E731
    offered = [loc("fsn1"), loc("nbg1", available=False), loc("hel1")]
    assert server_type_problem("cpx22", "fsn1", offered, "cluster.serverType") is None
    problem = server_type_problem("cpx22", "nbg1", offered, "cluster.serverType")
    assert "iot:cluster.serverType 'cpx22' is not available in 'nbg1'" in problem
    assert "fsn1, hel1" in problem
    assert server_type_problem("cpx22", "nbg1", [], "cluster.serverType") is None


def test_sold_out_server_type_is_reported_with_the_monitor_key():
    with pytest.raises(ConfigError) as info:
        run_stack("prod", sold_out=frozenset({("cpx12", "sin")}))
    message = str(info.value)
    assert "iot:monitors[3].serverType 'cpx12' is not available in 'sin'" in message
    assert "pick another server type or location" in message


def test_sold_out_cluster_type_is_reported_with_the_cluster_key():
    with pytest.raises(ConfigError, match=r"iot:cluster.serverType 'cpx22' is not available in 'nbg1'"):
        run_stack("prod", sold_out=frozenset({("cpx22", "nbg1")}))


def _monitor_start_triggers(run) -> dict[str, object]:
    return {res.name: res.inputs.get("triggers") for res in run.of_type(COMMAND)
            if res.name.startswith("monitors-") and res.name.endswith("-start")}


def test_monitor_restart_reruns_exactly_when_the_pushed_files_change(stack_runs):
    """A new image tag must restart the monitors on every deploy, not only on the first one
    (the installer prints the same line each time, so its output cannot be the trigger)."""
    base = _monitor_start_triggers(stack_runs("dev"))
    assert len(base) == 2 and all(base.values())
    assert _monitor_start_triggers(run_stack("dev")) == base  # same config: nothing re-runs
    for tag in ("abc123", "def456"):
        changed = _monitor_start_triggers(run_stack("dev", {"iot:imageTag": tag}))
        assert all(changed[name] != base[name] for name in base), tag
        base = changed


def _pushed_files(cmd: Registration) -> dict[str, str]:
    """Files a remote command pushes on stdin (path -> content); {} for commands that push none."""
    try:
        return {path: entry["content"] for path, entry in bundle(cmd).items()}
    except (KeyError, TypeError, ValueError):
        return {}


def test_prod_monitors_run_the_app_image_by_digest():
    digest = "sha256:" + "5e" * 32
    run = run_stack("prod", overrides={"iot:images": {"app": f"ghcr.io/acme/iot@{digest}",
                                                      "marketing": f"ghcr.io/acme/marketing@{digest}",
                                                      "docs": f"ghcr.io/acme/docs@{digest}"}})
    pushed = [content for res in run.of_type(COMMAND) for path, content in _pushed_files(res).items()
              if path.endswith("monitor-image.env")]
    assert len(pushed) == 6  # one per prod monitor
    assert set(pushed) == {f"IOT_MONITOR_IMAGE=ghcr.io/acme/iot@{digest}\n"}
    assert run.outputs["images"]["app"] == f"ghcr.io/acme/iot@{digest}"
