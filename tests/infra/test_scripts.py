"""Node scripts run for real against stand-in programs (tests/infra/standins.py): no consul, nomad,
systemd or cloud-init effects here, but every branch the scripts take on a node is exercised with
the answers the real tools give (tables, HTTP status codes, exit codes).

Covered: the upserting ACL bootstrap (first run, re-run, partial failure then re-run, transient
lookup failures, changed policies), the health gate (healthy, each way a node can be unhealthy),
iot-apply (first start, reload vs restart, package pins, failures that stay pending), the leave step,
metadata blocking, the CNI installer.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cloud_init.cluster import AGENT_UNITS, ClusterNodeSpec, cluster_node_files
from cloud_init.script_files import SCRIPTS_DIR
from components import remote

STANDINS = Path(__file__).with_name("standins.py")
TOOLS = ("consul", "nomad", "curl", "systemctl", "dpkg-query", "apt-get", "journalctl", "hostname", "modprobe",
         "sysctl", "sleep", "iot-install-cni")
MGMT, AGENT, NOMAD_CONSUL, CATALOG, BOOTSTRAP = (
    "11111111-aaaa-4000-8000-000000000001", "22222222-aaaa-4000-8000-000000000002",
    "33333333-aaaa-4000-8000-000000000003", "44444444-aaaa-4000-8000-000000000004",
    "55555555-aaaa-4000-8000-000000000005",
)
DEPLOYER_ID, DEPLOYER, OPERATOR_ID, OPERATOR = (
    "66666666-aaaa-4000-8000-000000000006", "77777777-aaaa-4000-8000-000000000007",
    "88888888-aaaa-4000-8000-000000000008", "99999999-aaaa-4000-8000-000000000009",
)
ALL_TOKENS = (MGMT, AGENT, NOMAD_CONSUL, CATALOG, BOOTSTRAP, DEPLOYER_ID, DEPLOYER, OPERATOR_ID, OPERATOR)
IPS = ("10.0.1.11", "10.0.1.12", "10.0.1.13")
NAMES = ("iot-prod-1-fsn1", "iot-prod-2-nbg1", "iot-prod-3-hel1")
SPEC = ClusterNodeSpec(hostname=NAMES[1], datacenter="nbg1", private_ip=IPS[1], private_cidr="10.0.1.0/24",
                       server_ips=IPS, consul_version="1.22.7", nomad_version="2.0.7", cni_version="1.6.2")


def healthy_cluster() -> dict:
    return {
        "hostname": NAMES[1],
        "consul": {
            "leader": f"{IPS[0]}:8300", "agent_up": True, "management": MGMT,
            "members": {name: {"ip": ip, "status": "alive"} for name, ip in zip(NAMES, IPS, strict=True)},
            "peers": [{"node": name, "address": f"{ip}:8300", "voter": True} for name, ip in zip(NAMES, IPS, strict=True)],
            "policies": {},
            "tokens": {"00000000-0000-4000-8000-000000000000": {"SecretID": MGMT, "Description": "Initial Management Token",
                                                                 "Policies": ["global-management"]}},
        },
        "nomad": {
            "leader": f"{IPS[0]}:4647", "peers": [f"{ip}:4647" for ip in IPS], "health": {"server": True, "client": True},
            "bootstrapped": None, "policies": {}, "tokens": {},
            "nodes": [{"ID": f"node-{i}", "Name": name, "Status": "ready", "SchedulingEligibility": "eligible"}
                      for i, name in enumerate(NAMES)],
        },
        "units": {u: {"state": "active", "enabled": True} for u in ("docker.service", *AGENT_UNITS)},
        "packages": {"consul": "1.22.7-1", "nomad": "2.0.7-1"},
        "faults": [], "cli_faults": [], "daemon_reloads": 0,
    }


class Node:
    """A sandboxed node: stand-in tools on PATH, the real pushed /etc/iot files under etc/."""

    def __init__(self, root: Path) -> None:
        self.root, self.bin, self.state_dir, self.etc = root, root / "bin", root / "state", root / "etc"
        self.cni = root / "cni"
        for d in (self.bin, self.state_dir, self.etc, self.cni):
            d.mkdir()
        for tool in TOOLS:
            wrapper = self.bin / tool
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDINS}" {tool} "$@"\n')
            wrapper.chmod(0o755)
        for f in cluster_node_files(SPEC):  # the files the push really delivers
            if f.path.startswith("/etc/iot/"):
                target = self.etc / f.path.removeprefix("/etc/iot/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f.content)
        (self.etc / "tokens").mkdir()
        (self.etc / "tokens/consul-management").write_text(MGMT + "\n")
        (self.etc / "tokens/nomad-management").write_text(BOOTSTRAP + "\n")
        (self.cni / ".iot-version").write_text("1.6.2\n")
        self.save(healthy_cluster())
        self.env = {"PATH": f"{self.bin}:/usr/bin:/bin", "STATE": str(self.state_dir), "HOME": str(root),
                    "IOT_ETC": str(self.etc), "IOT_STATE_DIR": str(root / "var"), "IOT_CNI_DIR": str(self.cni),
                    "IOT_INSTALL_CNI": str(self.bin / "iot-install-cni"), "IOT_RETRY_PAUSE": "0",
                    "IOT_GATE_INTERVAL": "0"}

    def load(self) -> dict:
        return json.loads((self.state_dir / "cluster.json").read_text())

    def save(self, state: dict) -> None:
        (self.state_dir / "cluster.json").write_text(json.dumps(state))

    def update(self, change) -> None:
        state = self.load()
        change(state)
        self.save(state)

    def calls(self) -> list[str]:
        path = self.state_dir / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def forget_calls(self) -> None:
        (self.state_dir / "calls").write_text("")

    def run(self, script: str, args: list[str] = (), stdin: str = "", **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPTS_DIR / script), *args], input=stdin, capture_output=True,
                              text=True, env={**self.env, **env}, timeout=120)


@pytest.fixture
def node(tmp_path) -> Node:
    return Node(tmp_path)


def tokens_stdin() -> str:
    return "".join(f"{t}\n" for t in ALL_TOKENS)


def bootstrap(node: Node, **env: str) -> subprocess.CompletedProcess:
    return node.run("cluster-bootstrap.sh", ["3"], tokens_stdin(), **env)


def consul_objects(state: dict) -> tuple[list[str], list[tuple[str, str]]]:
    policies = sorted(p["Name"] for p in state["consul"]["policies"].values())
    tokens = sorted((t["SecretID"], ",".join(t["Policies"])) for t in state["consul"]["tokens"].values())
    return policies, tokens


EXPECTED_POLICIES = ["iot-agent", "iot-catalog-read", "iot-nomad"]
EXPECTED_TOKENS = sorted([(MGMT, "global-management"), (AGENT, "iot-agent"), (NOMAD_CONSUL, "iot-nomad"),
                          (CATALOG, "iot-catalog-read")])


# --- the ACL bootstrap: an upsert ----------------------------------------------------------------

def test_bootstrap_first_run_creates_every_policy_and_token(node):
    result = bootstrap(node)
    assert result.returncode == 0, result.stderr
    state = node.load()
    assert consul_objects(state) == (EXPECTED_POLICIES, EXPECTED_TOKENS)
    agent_rules = json.loads(next(p["Rules"] for p in state["consul"]["policies"].values() if p["Name"] == "iot-agent"))
    assert agent_rules == json.loads((node.etc / "consul-policies/agent.json").read_text())
    assert state["nomad"]["bootstrapped"] == BOOTSTRAP  # read from stdin, no newline
    assert sorted(state["nomad"]["policies"]) == ["iot-deployer", "iot-operator"]
    assert state["nomad"]["policies"]["iot-deployer"]["Rules"] == (node.etc / "nomad-policies/deployer.hcl").read_text()
    assert state["nomad"]["tokens"] == {
        DEPLOYER_ID: {"SecretID": DEPLOYER, "Name": "iot-deployer", "Type": "client", "Policies": ["iot-deployer"]},
        OPERATOR_ID: {"SecretID": OPERATOR, "Name": "iot-operator", "Type": "client", "Policies": ["iot-operator"]},
    }
    for line in ("ok: Consul policy iot-agent created", "ok: Consul token 'consul agents' created",
                 "ok: Nomad ACLs bootstrapped", "ok: Nomad token iot-deployer in place",
                 "ok: 3 ready Nomad client node(s)"):
        assert line in result.stdout
    # No token is ever a process argument (argv is world-readable) or printed.
    for token in ALL_TOKENS:
        assert token not in result.stdout + result.stderr
        assert not [call for call in node.calls() if token in call]


def test_bootstrap_rerun_changes_nothing(node):
    assert bootstrap(node).returncode == 0
    before = node.load()
    node.forget_calls()
    again = bootstrap(node)
    assert again.returncode == 0, again.stderr
    after = node.load()
    assert after["consul"] == before["consul"] and after["nomad"]["tokens"] == before["nomad"]["tokens"]
    assert "ok: Consul policy iot-agent unchanged" in again.stdout
    assert "ok: Consul token 'traefik consul catalog' unchanged" in again.stdout
    assert "ok: Nomad ACLs already bootstrapped" in again.stdout
    calls = node.calls()
    assert not [c for c in calls if c.startswith("curl") and "-X PUT" in c]  # no Consul write at all
    assert not [c for c in calls if "acl bootstrap" in c]


def test_bootstrap_partial_failure_then_rerun_completes_without_duplicates(node):
    # Consul answers 500 for one policy lookup, every retry: the run stops there, naming it.
    node.update(lambda s: s["faults"].append({"match": "GET /v1/acl/policy/name/iot-catalog-read", "status": 500,
                                              "body": "rpc error: leadership lost", "times": 99}))
    failed = bootstrap(node)
    assert failed.returncode == 1
    assert "could not read Consul policy iot-catalog-read: HTTP 500 rpc error: leadership lost" in failed.stderr
    assert consul_objects(node.load())[0] == ["iot-agent"]  # what ran before the failure stays

    node.update(lambda s: s.update(faults=[]))
    again = bootstrap(node)
    assert again.returncode == 0, again.stderr
    assert consul_objects(node.load()) == (EXPECTED_POLICIES, EXPECTED_TOKENS)  # each exactly once
    assert "ok: Consul policy iot-agent unchanged" in again.stdout
    assert "ok: Consul policy iot-catalog-read created" in again.stdout


def test_a_transient_lookup_failure_never_leads_to_a_duplicate_create(node):
    assert bootstrap(node).returncode == 0
    # Today's failure mode: the existence check fails once, the script takes the token for missing,
    # creates it again and aborts on "SecretID is already in use". Here the lookup is retried.
    node.update(lambda s: s["faults"].extend([
        {"match": "GET /v1/acl/token/self", "status": 0, "times": 2},  # no answer at all (curl exit 7)
        {"match": "GET /v1/acl/policy/name/", "status": 503, "times": 1},
    ]))
    node.forget_calls()
    again = bootstrap(node)
    assert again.returncode == 0, again.stderr
    assert consul_objects(node.load()) == (EXPECTED_POLICIES, EXPECTED_TOKENS)
    assert not [c for c in node.calls() if c.startswith("curl") and "-X PUT" in c]


def test_tokens_created_by_the_old_script_are_found_by_their_secret(node):
    # Earlier bootstraps created tokens with Consul-generated accessor ids: the secret is the key.
    def old_tokens(state):
        for secret, policy, description in ((AGENT, "iot-agent", "consul agents"),
                                             (NOMAD_CONSUL, "iot-nomad", "nomad agents")):
            state["consul"]["tokens"][f"0ld-{policy}"] = {"SecretID": secret, "Description": description,
                                                           "Policies": [policy]}
    node.update(old_tokens)
    result = bootstrap(node)
    assert result.returncode == 0, result.stderr
    assert consul_objects(node.load())[1] == EXPECTED_TOKENS
    assert "ok: Consul token 'consul agents' unchanged" in result.stdout


def test_a_changed_policy_is_updated_in_place(node):
    assert bootstrap(node).returncode == 0
    ids = {p["Name"]: pid for pid, p in node.load()["consul"]["policies"].items()}
    rules = {"node_prefix": {"": {"policy": "write"}}, "service_prefix": {"": {"policy": "write"}}}
    (node.etc / "consul-policies/agent.json").write_text(json.dumps(rules))
    (node.etc / "nomad-policies/deployer.hcl").write_text('namespace "default" {\n  policy = "read"\n}\n')
    again = bootstrap(node)
    assert again.returncode == 0, again.stderr
    assert "ok: Consul policy iot-agent updated" in again.stdout
    state = node.load()
    assert json.loads(state["consul"]["policies"][ids["iot-agent"]]["Rules"]) == rules  # same policy, new rules
    assert consul_objects(state)[0] == EXPECTED_POLICIES
    assert state["nomad"]["policies"]["iot-deployer"]["Rules"].startswith('namespace "default" {\n  policy = "read"')


def test_a_changed_token_policy_is_updated_in_place(node):
    node.update(lambda s: s["consul"]["tokens"].update(
        {"0ld": {"SecretID": CATALOG, "Description": "traefik consul catalog", "Policies": ["iot-agent"]}}))
    result = bootstrap(node)
    assert result.returncode == 0, result.stderr
    assert "ok: Consul token 'traefik consul catalog' updated" in result.stdout
    assert node.load()["consul"]["tokens"]["0ld"]["Policies"] == ["iot-catalog-read"]


def test_a_failed_nomad_self_check_does_not_abort_the_bootstrap(node):
    node.update(lambda s: s["nomad"].update(bootstrapped=BOOTSTRAP))
    # The "already bootstrapped?" check fails once; the bootstrap attempt then says "already done".
    node.update(lambda s: s["cli_faults"].append({"match": "nomad acl token self", "times": 1}))
    result = bootstrap(node)
    assert result.returncode == 0, result.stderr
    assert "ok: Nomad management token" in result.stdout


def test_nomad_bootstrapped_with_another_token_is_reported(node):
    node.update(lambda s: s["nomad"].update(bootstrapped="aaaaaaaa-0000-4000-8000-000000000000"))
    result = bootstrap(node, IOT_BOOTSTRAP_TIMEOUT="1")
    assert result.returncode == 1
    assert "Nomad ACL bootstrap failed (Error bootstrapping: Unexpected response code: 400 (ACL bootstrap already done" in result.stderr
    assert "management token does not work" in result.stderr


def test_bootstrap_times_out_when_clients_never_become_ready(node):
    node.update(lambda s: [n.update(Status="initializing") for n in s["nomad"]["nodes"][1:]])
    result = bootstrap(node, IOT_BOOTSTRAP_TIMEOUT="1")
    assert result.returncode != 0
    assert "timed out after 1s waiting for 3 ready Nomad client node(s)" in result.stderr


def test_bootstrap_refuses_malformed_stdin(node):
    result = node.run("cluster-bootstrap.sh", ["3"], "not-a-token\n")
    assert result.returncode == 2 and "9 ACL ids" in result.stderr
    result = node.run("cluster-bootstrap.sh", [], tokens_stdin())
    assert result.returncode != 0 and "usage: iot-cluster-bootstrap <expected-ready-nodes>" in result.stderr


# --- the health gate ---------------------------------------------------------------------------------

def gate(node: Node, timeout: str = "1") -> subprocess.CompletedProcess:
    return node.run("health-gate.sh", IOT_GATE_TIMEOUT=timeout)


def test_gate_passes_on_a_healthy_node(node):
    result = gate(node)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "ok: iot-prod-2-nbg1 is healthy: Consul member alive, Consul and Nomad Raft have a leader and all 3 "
        "voters, Nomad server alive, client ready")
    assert MGMT not in result.stdout + result.stderr


def test_gate_needs_no_nomad_acl_token(node):
    # A new cluster is gated before its Nomad ACLs are bootstrapped: no Nomad call may need a token.
    assert node.load()["nomad"]["bootstrapped"] is None
    assert gate(node).returncode == 0


def drop_consul_voter(state):
    state["consul"]["peers"][2]["voter"] = False


def drop_nomad_peer(state):
    state["nomad"]["peers"].pop(2)


@pytest.mark.parametrize(("breakage", "problem"), [
    (lambda s: s["consul"].update(leader=""), "Consul Raft: Error getting peers: Failed to retrieve raft "
                                              "configuration: Unexpected response code: 500 (No cluster leader)"),
    (drop_consul_voter, "Consul Raft lacks voter(s) 10.0.1.13 (voters: 10.0.1.11:8300 10.0.1.12:8300)"),
    (lambda s: s["consul"]["members"]["iot-prod-2-nbg1"].update(status="failed"),
     "Consul member iot-prod-2-nbg1 is failed"),
    (lambda s: s["consul"].update(agent_up=False), "Consul agent does not answer: Error retrieving members"),
    (drop_nomad_peer, "Nomad Raft lacks voter(s) 10.0.1.13 (voters: 10.0.1.11:4647 10.0.1.12:4647)"),
    (lambda s: s["nomad"].update(leader=""), "Nomad Raft has no leader"),
    (lambda s: s["nomad"]["health"].update(client=False, client_message="no known servers"),
     "Nomad client on iot-prod-2-nbg1 is unhealthy: no known servers"),
    (lambda s: s["units"]["nomad.service"].update(state="failed"), "nomad.service is failed"),
    (lambda s: s["packages"].update(nomad="2.0.1-1"), "nomad 2.0.1-1 is installed, 2.0.7-1 is pinned"),
])
def test_gate_fails_naming_the_node_and_what_is_wrong(node, breakage, problem):
    node.update(breakage)
    result = gate(node)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "health gate failed on iot-prod-2-nbg1 after 1s; the rollout stops here:"
    assert [line for line in lines if line.startswith(f"  - {problem}")], result.stderr


def test_gate_waits_for_a_node_that_recovers(node):
    # Right after a restart Raft has no leader yet: the gate polls until it has one.
    node.update(lambda s: s["cli_faults"].append({"match": "consul operator raft list-peers", "times": 3,
                                                  "message": "No cluster leader"}))
    result = gate(node, timeout="60")
    assert result.returncode == 0, result.stderr
    assert len([c for c in node.calls() if c == "consul operator raft list-peers"]) == 4


def test_gate_tolerates_a_server_that_is_being_removed(node):
    # Removing a node: the others are gated with the new server list before the old node leaves.
    def extra_server(state):
        state["consul"]["peers"].append({"node": "iot-prod-4-fsn1", "address": "10.0.1.14:8300", "voter": True})
        state["nomad"]["peers"].append("10.0.1.14:4647")
    node.update(extra_server)
    assert gate(node).returncode == 0


# --- iot-apply: pending actions, first start, rolling apply ------------------------------------------

def pending(node: Node) -> list[str]:
    directory = node.root / "var/pending"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def mark(node: Node, *actions: str) -> None:
    directory = node.root / "var/pending"
    directory.mkdir(parents=True, exist_ok=True)
    for action in actions:
        (directory / action).write_text("")


def events(node: Node, unit: str) -> list[str]:
    return node.load()["units"].get(unit, {}).get("events", [])


def apply(node: Node, *flags: str, units=AGENT_UNITS, **env: str) -> subprocess.CompletedProcess:
    return node.run("apply.sh", [*flags, *units], VERSIONS=str(node.etc / "versions.env"),
                    IOT_VERSIONS_FILE=str(node.etc / "versions.env"), **env)


def test_first_start_starts_stopped_agents_and_clears_what_their_start_covers(node):
    node.update(lambda s: s.update(units={"docker.service": {"state": "active", "enabled": True}}))
    mark(node, "daemon-reload", "sysctl", "packages", "restart:consul.service", "restart:nomad.service",
         "reload:consul.service", "restart:iot-block-metadata.service")
    result = apply(node, "--start-only")
    assert result.returncode == 0, result.stderr
    for unit in AGENT_UNITS:
        assert events(node, unit) == ["start"], unit
        assert node.load()["units"][unit]["enabled"]
    assert node.load()["daemon_reloads"] == 1
    assert pending(node) == ["packages"]  # versions are checked by the chained step


def test_first_start_leaves_running_agents_to_the_rolling_step(node):
    mark(node, "restart:consul.service", "reload:nomad.service")
    result = apply(node, "--start-only")
    assert result.returncode == 0, result.stderr
    assert events(node, "consul.service") == events(node, "nomad.service") == []
    assert pending(node) == ["reload:nomad.service", "restart:consul.service"]
    assert "pending: consul.service is running; its changes wait for the rolling apply step" in result.stdout


def test_rolling_apply_reloads_for_certificates_and_restarts_for_settings(node):
    mark(node, "restart:consul.service", "reload:consul.service", "reload:nomad.service")
    result = apply(node)
    assert result.returncode == 0, result.stderr
    assert events(node, "consul.service") == ["restart"]  # a restart covers the reload too
    assert events(node, "nomad.service") == ["reload"]
    assert events(node, "iot-block-metadata.service") == []
    assert pending(node) == []
    assert "ok: nomad.service reloaded" in result.stdout and "ok: consul.service restarted" in result.stdout


def test_new_pinned_versions_are_installed_and_restart_both_agents(node):
    node.update(lambda s: s["packages"].update(nomad="2.0.1-1"))
    mark(node, "packages")
    result = apply(node)
    assert result.returncode == 0, result.stderr
    state = node.load()
    assert state["packages"] == {"consul": "1.22.7-1", "nomad": "2.0.7-1"}
    assert [c for c in node.calls() if c.startswith("apt-get install")] == [
        "apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confold nomad=2.0.7-1"]
    assert events(node, "consul.service") == ["restart"] and events(node, "nomad.service") == ["restart"]
    assert state["cni_installs"] == ["1.6.2"]
    assert pending(node) == []


def test_a_failed_restart_stops_the_apply_and_stays_pending(node):
    node.update(lambda s: s["units"]["consul.service"].update(broken=True))
    mark(node, "restart:consul.service", "reload:nomad.service")
    result = apply(node)
    assert result.returncode == 1
    assert "iot-apply on iot-prod-2-nbg1: consul.service failed to restart; last log lines:" in result.stderr
    assert events(node, "nomad.service") == []  # nothing after the failing unit is touched
    assert pending(node) == ["reload:nomad.service", "restart:consul.service"]

    node.update(lambda s: s["units"]["consul.service"].update(broken=False))
    again = apply(node)
    assert again.returncode == 0, again.stderr
    # The failed unit is down: starting it reads the whole new config; nomad's reload still happens.
    assert events(node, "consul.service") == ["start"] and events(node, "nomad.service") == ["reload"]
    assert pending(node) == []


def test_push_then_apply_a_renewed_certificate_is_a_reload(node, tmp_path):
    """The real installer and iot-apply together: first push restarts, a certificate renewal only
    reloads, an unchanged push does nothing."""
    owner = __import__("pwd").getpwuid(os.getuid()).pw_name

    def bundle(cert: str) -> str:
        entries = [{**f.entry(), "owner": owner} for f in cluster_node_files(SPEC)]
        for path, unit in (("/etc/iot/consul.d/tls/node.pem", "consul"), ("/etc/iot/nomad.d/tls/node.pem", "nomad")):
            entries.append({"path": path, "mode": "0644", "owner": owner, "content": cert,
                            "on_change": [f"reload:{unit}.service"]})
        return json.dumps({"files": entries})

    def push(text: str) -> subprocess.CompletedProcess:
        env = {**node.env, "IOT_FILES_DESTDIR": str(tmp_path / "root")}
        return subprocess.run(["sh", "-c", remote.INSTALL_FILES], input=text, env=env, capture_output=True, text=True)

    assert push(bundle("CERT 1")).returncode == 0
    assert apply(node).returncode == 0
    assert events(node, "consul.service") == ["restart"] and events(node, "nomad.service") == ["restart"]

    assert push(bundle("CERT 2")).stdout.splitlines() == ["changed: /etc/iot/consul.d/tls/node.pem",
                                                          "changed: /etc/iot/nomad.d/tls/node.pem"]
    assert apply(node).returncode == 0
    assert events(node, "consul.service") == ["restart", "reload"]
    assert events(node, "nomad.service") == ["restart", "reload"]

    assert push(bundle("CERT 2")).stdout == ""
    assert apply(node).returncode == 0
    assert events(node, "consul.service") == ["restart", "reload"]  # nothing changed, nothing touched


def test_apply_requires_units(node):
    result = node.run("apply.sh")
    assert result.returncode == 2 and "usage: iot-apply" in result.stderr


# --- leaving the cluster -------------------------------------------------------------------------

def test_leave_drains_then_leaves_both_rafts(node):
    result = node.run("node-leave.sh")
    assert result.returncode == 0, result.stderr
    state = node.load()
    assert state["nomad"]["drained"] is True
    assert state["units"]["nomad.service"] == {"state": "inactive", "enabled": False}
    assert state["nomad"]["force_left"] == {"name": "iot-prod-2-nbg1.global", "via": "https://10.0.1.11:4646"}
    assert state["consul"]["left"] is True
    assert state["units"]["consul.service"]["enabled"] is False
    calls = node.calls()
    order = [next(i for i, c in enumerate(calls) if c.startswith(prefix)) for prefix in (
        "nomad node drain -self -enable -yes -deadline 5m", "systemctl disable --now nomad.service",
        "nomad server force-leave -prune iot-prod-2-nbg1.global", "consul leave")]
    assert order == sorted(order)
    assert "ok: iot-prod-2-nbg1 left the cluster (0 warning(s))" in result.stdout


def test_leave_skips_the_drain_when_no_other_node_can_take_the_work(node):
    node.update(lambda s: s["nomad"].update(nodes=[n for n in s["nomad"]["nodes"] if n["Name"] == NAMES[1]]))
    result = node.run("node-leave.sh")
    assert result.returncode == 0, result.stderr
    assert "drained" not in node.load()["nomad"]
    assert "no other ready Nomad client: iot-prod-2-nbg1 is not drained" in result.stdout


def test_leave_goes_on_when_a_step_fails(node):
    node.update(lambda s: s["cli_faults"].append({"match": "consul leave", "times": 1}))
    result = node.run("node-leave.sh")
    assert result.returncode == 0
    assert "warning: iot-prod-2-nbg1: consul leave failed; autopilot removes the dead server" in result.stderr
    assert node.load()["units"]["consul.service"]["enabled"] is False


# --- small host scripts --------------------------------------------------------------------------

def stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path):
    bin_dir = tmp_path / "bin"
    state = tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(state), "HOME": str(tmp_path)}
    return bin_dir, state, env


def run_script(script: str, args: list[str], env: dict, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS_DIR / script), *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.mark.parametrize(("status", "ok"), [(0, True), (2, True), (1, False)])
def test_wait_for_cloud_init_tolerates_warnings_only(sandbox, status, ok):
    bin_dir, _, env = sandbox
    stub(bin_dir, "cloud-init", f"exit {status}\n")
    result = subprocess.run(["sh", "-c", remote.WAIT_CLOUD_INIT], env=env, capture_output=True)
    assert (result.returncode == 0) is ok


def test_metadata_block_inserts_each_rule_once_for_both_families(sandbox):
    bin_dir, state, env = sandbox
    for tool in ("iptables", "ip6tables"):
        stub(bin_dir, tool, rf'''
rule="$*"
case "$3" in
  -C) grep -qxF -- "{tool} ${{rule/-C/-I}}" "$STATE/rules" 2>/dev/null ;;
  -I) echo "{tool} $rule" >> "$STATE/rules" ;;
  -n) exit 0 ;;  # DOCKER-USER chain exists
  *) exit 3 ;;
esac
''')
    for _ in range(2):
        result = run_script("block-metadata.sh", [], env)
        assert result.returncode == 0, result.stderr
    rules = (state / "rules").read_text().splitlines()
    assert rules == [
        "iptables -t raw -I PREROUTING -d 169.254.169.254/32 -j DROP",
        "ip6tables -t raw -I PREROUTING -d fd00:a9fe:a9fe::1/128 -j DROP",
        "iptables -t filter -I DOCKER-USER -d 169.254.169.254/32 -j REJECT --reject-with icmp-port-unreachable",
        "ip6tables -t filter -I DOCKER-USER -d fd00:a9fe:a9fe::1/128 -j REJECT --reject-with icmp6-port-unreachable",
    ]


def test_cni_install_verifies_checksum_and_is_idempotent(sandbox, tmp_path):
    bin_dir, state, env = sandbox
    release = tmp_path / "release"
    release.mkdir()
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as tar:
        data = b"#!/bin/sh\n"
        info = tarfile.TarInfo("bridge")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    name = "cni-plugins-linux-amd64-v1.6.2.tgz"
    (release / name).write_bytes(payload.getvalue())
    (release / f"{name}.sha256").write_text(f"{hashlib.sha256(payload.getvalue()).hexdigest()}  {name}\n")
    stub(bin_dir, "dpkg", "echo amd64\n")
    stub(bin_dir, "curl", f'''
echo "curl $*" >> "$STATE/calls"
out=""; url=""
while [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift 2 ;; -*) shift ;; *) url="$1"; shift ;; esac; done
cp "{release}/${{url##*/}}" "$out"
''')
    dest = tmp_path / "opt-cni-bin"
    script = (SCRIPTS_DIR / "install-cni.sh").read_text().replace("dest=/opt/cni/bin", f"dest={dest}")
    (tmp_path / "install-cni.sh").write_text(script)
    for _ in range(2):
        result = subprocess.run(["sh", str(tmp_path / "install-cni.sh"), "1.6.2"], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert (dest / "bridge").exists()
    assert (dest / ".iot-version").read_text() == "1.6.2\n"
    calls = (state / "calls").read_text().splitlines()
    assert len(calls) == 2  # tarball + checksum once; the second run saw the marker
    assert "releases/download/v1.6.2/cni-plugins-linux-amd64-v1.6.2.tgz" in calls[0]

    (dest / ".iot-version").unlink()
    (release / name).write_bytes(b"tampered")
    result = subprocess.run(["sh", str(tmp_path / "install-cni.sh"), "1.6.2"], env=env, capture_output=True, text=True)
    assert result.returncode != 0  # checksum mismatch stops the install
    assert not (dest / ".iot-version").exists()


def test_scripts_are_executable_text_with_a_shebang():
    for path in SCRIPTS_DIR.iterdir():
        if path.suffix in (".sh", ".py"):
            assert path.read_text().startswith("#!/"), path.name
            assert os.access(path, os.R_OK)


def test_standins_start_healthy():
    # The fixture's cluster is the one every scenario breaks on purpose: keep it self-consistent.
    state = healthy_cluster()
    assert [p["address"] for p in state["consul"]["peers"]] == [f"{ip}:8300" for ip in IPS]
    assert copy.deepcopy(state) == state
