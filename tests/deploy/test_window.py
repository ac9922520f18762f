"""`python -m deploy window open|close`: the CI runner's /32 on SSH and the Nomad API, for one job.

Against fake Hetzner and Linode APIs served on loopback (tests/deploy/fake_clouds.py), through the
real hcloud and linode_api4 clients: what the servers of each stack admit after `open`, after
`close`, after a crashed half-open run, and what is refused before any call.
"""

from __future__ import annotations

import copy
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fake_clouds import FakeHetzner, FakeLinode, serve

from deploy import window
from deploy.plan import run_plan

RUNNER = "4.231.12.34"  # a public address: nothing is ever sent there, it only travels as data
HETZNER_TOKEN = "hetzner-test-token"
LINODE_TOKEN = "linode-test-token"
CLOUDFLARE = ["173.245.48.0/20"]
ORIGINAL_LINODE_RULES = {
    "inbound": [
        {"label": "allow-tcp-80-0", "action": "ACCEPT", "protocol": "TCP", "ports": "80",
         "addresses": {"ipv4": CLOUDFLARE}, "description": "HTTP(S) 80 from Cloudflare only"},
        {"label": "allow-tcp-22-1", "action": "ACCEPT", "protocol": "TCP", "ports": "22",
         "addresses": {"ipv4": ["198.51.100.7/32"]}, "description": "SSH from admin networks"},
    ],
    "inbound_policy": "DROP",
    "outbound": [],
    "outbound_policy": "ACCEPT",
}
PULUMI_FIREWALL = {"name": "iot-prod-cluster", "labels": {"app": "iot", "stack": "prod", "role": "cluster"},
                   "rules": [{"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["198.51.100.7/32"]}],
                   "applied_to": [{"type": "server", "server": {"id": 3}}]}


def servers() -> list[dict]:
    def server(sid: int, stack: str, role: str) -> dict:
        return {"id": sid, "name": f"iot-{stack}-{role}-{sid}", "labels": {"app": "iot", "stack": stack, "role": role}}

    return [server(1, "dev", "cluster"), server(2, "dev", "monitor"), server(3, "prod", "cluster"),
            server(4, "prod", "cluster"), server(5, "prod", "monitor")]


@pytest.fixture
def clouds():
    hetzner = FakeHetzner(servers=servers())
    hetzner.firewalls[6001] = {"id": 6001, "created": "2026-01-01T00:00:00+00:00", **copy.deepcopy(PULUMI_FIREWALL)}
    linode = FakeLinode(firewalls={
        55: {"id": 55, "label": "iot-prod-monitors", "rules": copy.deepcopy(ORIGINAL_LINODE_RULES)},
        56: {"id": 56, "label": "iot-other-monitors", "rules": copy.deepcopy(ORIGINAL_LINODE_RULES)},
    })
    with serve(hetzner) as hetzner_url, serve(linode) as linode_url:
        env = {"HCLOUD_TOKEN": HETZNER_TOKEN, "LINODE_TOKEN": LINODE_TOKEN,
               "HCLOUD_ENDPOINT": f"{hetzner_url}/v1", "LINODE_ENDPOINT": f"{linode_url}/v4"}
        yield hetzner, linode, env


def run(action: str, stack: str, project_dir: Path, env: dict, *extra: str) -> int:
    return window.main([action, "--stack", stack, "--work-dir", str(project_dir), *extra], env=env)


def window_firewalls(hetzner: FakeHetzner) -> list[dict]:
    return [f for f in hetzner.firewalls.values() if f["id"] != 6001]


def writes(api) -> list[str]:
    return [f"{r.method} {r.path}" for r in api.requests if r.method != "GET"]


def test_open_admits_exactly_the_runner_on_ssh_and_nomad_for_this_stack_only(clouds, project_dir):
    hetzner, linode, env = clouds
    before = {s["id"]: hetzner.admitted(s["id"]) for s in hetzner.servers}
    assert run("open", "prod", project_dir, env, "--address", RUNNER) == 0
    one = f"{RUNNER}/32"
    added = {sid: hetzner.admitted(sid) - admitted for sid, admitted in before.items()}
    assert all(hetzner.admitted(sid) >= admitted for sid, admitted in before.items()), "nothing is taken away"
    assert added[3] == added[4] == {("tcp", "22", one), ("tcp", "4646", one)}, "cluster: SSH + Nomad API"
    assert added[5] == {("tcp", "22", one)}, "monitors: SSH only"
    assert added[1] == added[2] == set(), "the dev servers are not touched"
    sources = {src for f in window_firewalls(hetzner) for rule in f["rules"] for src in rule["source_ips"]}
    assert sources == {one}, "one /32, nothing wider"
    assert all(rule["direction"] == "in" for f in window_firewalls(hetzner) for rule in f["rules"])
    inbound = linode.firewalls[55]["rules"]["inbound"]
    assert inbound[:2] == ORIGINAL_LINODE_RULES["inbound"], "the stack's own rules are kept, in order"
    (added,) = inbound[2:]
    assert (added["action"], added["protocol"], added["ports"], added["addresses"]) == (
        "ACCEPT", "TCP", "22", {"ipv4": [one]})
    assert linode.firewalls[55]["rules"]["inbound_policy"] == "DROP"
    assert linode.firewalls[56]["rules"] == ORIGINAL_LINODE_RULES, "another stack's firewall is not touched"


def test_close_removes_what_open_added_and_nothing_else(clouds, project_dir):
    hetzner, linode, env = clouds
    assert run("open", "prod", project_dir, env, "--address", RUNNER) == 0
    assert run("close", "prod", project_dir, env) == 0
    assert window_firewalls(hetzner) == []
    assert hetzner.firewalls[6001]["rules"] == PULUMI_FIREWALL["rules"], "Pulumi's own firewall is untouched"
    assert all(not any(r[2] == f"{RUNNER}/32" for r in hetzner.admitted(s["id"])) for s in hetzner.servers)
    assert linode.firewalls[55]["rules"] == ORIGINAL_LINODE_RULES


def test_servers_created_during_the_window_get_it_and_lose_it_with_the_rest(clouds, project_dir):
    """`up` may create a node mid-job: the label selector covers it, and close removes it again."""
    hetzner, _, env = clouds
    assert run("open", "prod", project_dir, env, "--address", RUNNER) == 0
    hetzner.servers.append({"id": 9, "name": "iot-prod-new", "labels": {"app": "iot", "stack": "prod", "role": "cluster"}})
    assert {r[1] for r in hetzner.admitted(9)} == {"22", "4646"}
    assert run("close", "prod", project_dir, env) == 0
    assert hetzner.admitted(9) == set()


def test_a_second_open_replaces_the_window_instead_of_adding_one(clouds, project_dir):
    hetzner, linode, env = clouds
    assert run("open", "prod", project_dir, env, "--address", RUNNER) == 0
    first = len(window_firewalls(hetzner))
    assert run("open", "prod", project_dir, env, "--address", "4.231.12.35") == 0
    assert len(window_firewalls(hetzner)) == first
    sources = {src for f in window_firewalls(hetzner) for rule in f["rules"] for src in rule["source_ips"]}
    assert sources == {"4.231.12.35/32"}, "the earlier run's address is gone"
    assert len(linode.firewalls[55]["rules"]["inbound"]) == 3


def test_close_without_an_open_window_succeeds_and_changes_nothing(clouds, project_dir):
    hetzner, linode, env = clouds
    assert run("close", "prod", project_dir, env) == 0
    assert writes(hetzner) == [] and writes(linode) == []


def test_close_cleans_up_after_a_half_open_window(clouds, project_dir, capsys):
    hetzner, linode, env = clouds
    # The first window firewall is created, the second create fails (an API hiccup mid-open).
    original = hetzner.handle
    calls = {"n": 0}

    def flaky(req):
        if (req.method, req.path) == ("POST", "/v1/firewalls"):
            calls["n"] += 1
            if calls["n"] == 2:
                return 503, {"error": {"code": "unavailable", "message": "try again"}}
        return original(req)

    hetzner.handle = flaky
    assert run("open", "prod", project_dir, env, "--address", RUNNER) == 1
    assert "window open" in capsys.readouterr().err
    assert window_firewalls(hetzner), "half open: one firewall exists"
    assert run("close", "prod", project_dir, env) == 0
    assert window_firewalls(hetzner) == []
    assert linode.firewalls[55]["rules"] == ORIGINAL_LINODE_RULES


@pytest.mark.parametrize("address", ["10.1.2.3", "4.231.12.0/24", "0.0.0.0/0", "::/0", "127.0.0.1", "not-an-ip"])
def test_anything_but_one_public_address_is_refused_before_any_call(clouds, project_dir, address, capsys):
    hetzner, linode, env = clouds
    assert run("open", "prod", project_dir, env, "--address", address) == 1
    assert hetzner.requests == [] and linode.requests == []
    assert "one public address" in capsys.readouterr().err


def test_the_runner_address_is_discovered_when_asked(clouds, project_dir):
    hetzner, _, env = clouds

    class WhatIsMyIp(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = f"{RUNNER}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), WhatIsMyIp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        assert run("open", "dev", project_dir, env, "--address", "auto", "--ip-url", url) == 0
    finally:
        server.shutdown()
    assert {r[2] for r in hetzner.admitted(1)} == {f"{RUNNER}/32"}


def test_missing_tokens_fail_in_one_line_naming_the_variable(clouds, project_dir, capsys):
    hetzner, linode, env = clouds
    assert run("open", "dev", project_dir, {k: v for k, v in env.items() if k != "HCLOUD_TOKEN"},
               "--address", RUNNER) == 1
    assert "HCLOUD_TOKEN" in capsys.readouterr().err
    # prod has a Linode monitor (Tokyo): without LINODE_TOKEN its SSH would stay closed, so refuse up front.
    assert run("open", "prod", project_dir, {k: v for k, v in env.items() if k != "LINODE_TOKEN"},
               "--address", RUNNER) == 1
    assert "LINODE_TOKEN" in capsys.readouterr().err
    assert hetzner.requests == [] and linode.requests == []


def test_an_api_error_is_reported_without_the_token(clouds, project_dir, capsys):
    hetzner, _, env = clouds
    env = {**env, "HCLOUD_TOKEN": "wrong-token-value-123"}
    assert run("open", "dev", project_dir, env, "--address", RUNNER) == 1
    out = capsys.readouterr()
    assert "unable to authenticate" in out.err
    assert "wrong-token-value-123" not in out.out + out.err


def test_tokens_travel_only_in_the_authorization_header(clouds, project_dir):
    hetzner, linode, env = clouds
    assert run("open", "prod", project_dir, env, "--address", RUNNER) == 0
    for api, token in ((hetzner, HETZNER_TOKEN), (linode, LINODE_TOKEN)):
        for req in api.requests:
            assert token not in req.path and token not in str(req.query) and token not in str(req.body)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_servers_ignore_firewalls_applied_outside_pulumi(stack):
    """While a window is open, `up` must not see (or try to undo) the extra firewall on a server."""
    servers = [r for r in run_plan(stack) if r.type == "hcloud:index/server:Server"]
    assert servers and all(r.inputs.get("ignoreRemoteFirewallIds") is True for r in servers)


def test_the_window_is_a_subcommand_of_python_m_deploy(tmp_path, project_dir):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HCLOUD_TOKEN", "LINODE_TOKEN")}
    env["PYTHONPATH"] = str(Path(window.__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-m", "deploy", "window", "close", "--stack", "dev", "--work-dir",
                           str(project_dir)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "HCLOUD_TOKEN is not set" in done.stderr


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_window_finds_what_the_program_declares(stack):
    """Selectors and the Linode label must keep matching components/cluster.py and monitors.py."""
    resources = run_plan(stack)
    selectors = {w.selector for w in window.hetzner_windows(stack, f"{RUNNER}/32")}
    for server in (r for r in resources if r.type == "hcloud:index/server:Server"):
        labels = server.inputs["labels"]
        assert f"stack={labels['stack']},role={labels['role']}" in selectors, server.name
    linode_firewalls = [r.inputs["label"] for r in resources if r.type == "linode:index/firewall:Firewall"]
    assert linode_firewalls == ([window.linode_firewall_label(stack)] if stack == "prod" else [])
    assert window.stack_uses_linode(Path(window.REPO_DIR), stack) is (stack == "prod")
