"""Rendered user data: valid cloud-config, known keys only, small, secret-free, scripts lint clean."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cloud_init import common
from cloud_init.cluster import (
    ClusterNodeSpec,
    consul_config,
    nomad_config,
    private_address_template,
    render_cluster_user_data,
)
from cloud_init.monitor import ENV_FILE, IMAGE_FILE, monitor_unit, render_monitor_user_data
from cloud_init.script_files import INSTALLED_SCRIPTS, SCRIPTS_DIR
from cloud_init.units import render_unit
from components import remote

SCHEMA_PATH = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")
SPEC_3 = ClusterNodeSpec(
    hostname="iot-prod-2-nbg1", datacenter="nbg1", private_ip="10.0.1.12", private_cidr="10.0.1.0/24",
    server_ips=("10.0.1.11", "10.0.1.12", "10.0.1.13"), consul_version="1.22.7", nomad_version="2.0.7",
    cni_version="1.6.2",
)


@pytest.fixture(scope="module")
def recorded_user_data(stack_runs) -> dict[str, str]:
    """Every user data the committed stacks would send to a provider, by resource name."""
    found = {}
    for stack in ("dev", "prod"):
        run = stack_runs(stack)
        for res in run.of_type("hcloud:index/server:Server"):
            found[f"{stack}/{res.name}"] = res.inputs["userData"]
        for res in run.of_type("linode:index/instance:Instance"):
            found[f"{stack}/{res.name}"] = base64.b64decode(res.inputs["metadatas"][0]["userData"]).decode()
        found[f"{stack}/__fakes__"] = "\n".join(sorted(run.secret_fragments()))
    return found


def user_data_items(recorded: dict[str, str]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in recorded.items() if not k.endswith("__fakes__")]


def schema_top_level_keys() -> set[str]:
    schema = json.loads(SCHEMA_PATH.read_text())
    keys: set[str] = set()
    for ref in schema["allOf"]:
        name = ref["$ref"].split("/")[-1]
        keys |= set(schema["$defs"][name].get("properties", {}))
    return keys


def test_recorded_user_data_covers_every_server(recorded_user_data):
    names = [k for k, _ in user_data_items(recorded_user_data)]
    assert len([n for n in names if n.startswith("dev/")]) == 3  # 1 node + 2 monitors
    assert len([n for n in names if n.startswith("prod/")]) == 9  # 3 nodes + 6 monitors
    assert "prod/monitors-tokyo" in names


def test_user_data_passes_cloud_init_schema(recorded_user_data, tmp_path):
    # Every distinct user data, validated concurrently (each `cloud-init schema` mostly waits on startup).
    distinct = sorted({text for _, text in user_data_items(recorded_user_data)})
    assert len(distinct) == 12  # hostnames and addresses make every server's user data unique
    procs = []
    for i, text in enumerate(distinct):
        path = tmp_path / f"user-data-{i}.yaml"
        path.write_text(text)
        procs.append(subprocess.Popen(["cloud-init", "schema", "--config-file", str(path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output


def test_user_data_top_level_keys_are_known_to_cloud_init(recorded_user_data):
    known = schema_top_level_keys()
    assert {"write_files", "runcmd", "apt", "packages"} <= known  # the schema parse itself works
    for name, text in user_data_items(recorded_user_data):
        assert text.startswith("#cloud-config\n"), name
        unknown = set(yaml.safe_load(text)) - known
        assert not unknown, f"{name}: keys cloud-init would silently ignore: {unknown}"


def test_schema_key_check_catches_a_misspelling():
    document = yaml.safe_load(render_monitor_user_data("x"))
    document["runcmds"] = document.pop("runcmd")
    assert set(document) - schema_top_level_keys() == {"runcmds"}


def test_user_data_is_under_32_kib(recorded_user_data):
    for name, text in user_data_items(recorded_user_data):
        assert len(text.encode()) < 32 * 1024, name


def test_user_data_contains_no_secret(recorded_user_data):
    for stack in ("dev", "prod"):
        fakes = [f for f in recorded_user_data[f"{stack}/__fakes__"].split("\n") if f]
        fragments = {line for f in fakes for line in f.splitlines() if line and not line.startswith("-----")}
        assert len(fragments) >= 10  # the harness really produced recognisable secrets
        for name, text in user_data_items(recorded_user_data):
            if not name.startswith(f"{stack}/"):
                continue
            for fragment in fragments:
                assert fragment not in text, f"{name} leaks {fragment!r}"
            assert "PRIVATE KEY" not in text
            paths = [f["path"] for f in yaml.safe_load(text)["write_files"]]
            assert not [p for p in paths if p.endswith(("secrets.json", "key.pem", ".env"))], name


def test_oversized_user_data_is_refused():
    with pytest.raises(ValueError, match="over the 32768-byte provider limit"):
        common.dump_cloud_config({"write_files": [{"path": "/x", "content": "a" * 40000}]})


def test_cluster_packages_are_pinned_from_signed_repositories():
    document = yaml.safe_load(render_cluster_user_data(SPEC_3))
    assert ["consul", "1.22.7-1"] in document["packages"]
    assert ["nomad", "2.0.7-1"] in document["packages"]
    assert "docker-ce" in document["packages"]
    for source in document["apt"]["sources"].values():
        assert source["source"].startswith("deb [signed-by=$KEY_FILE] https://")
        assert len(source["keyid"]) == 40  # full fingerprint, not a short id
    assert [INSTALLED_SCRIPTS["install-cni.sh"], "1.6.2"] in document["runcmd"]


def test_agents_bind_to_the_private_cidr_via_sockaddr_templates():
    template = private_address_template("10.0.1.0/24")
    assert template == '{{ GetPrivateInterfaces | include "network" "10.0.1.0/24" | attr "address" }}'
    consul = consul_config(SPEC_3)
    nomad = nomad_config(SPEC_3)
    assert consul["bind_addr"] == consul["advertise_addr"] == template
    assert consul["retry_join"] == ["10.0.1.11", "10.0.1.12", "10.0.1.13"]
    assert consul["bootstrap_expect"] == nomad["server"]["bootstrap_expect"] == 3
    assert nomad["addresses"]["rpc"] == nomad["addresses"]["serf"] == template
    assert nomad["advertise"]["rpc"] == template
    assert nomad["client"]["network_interface"].startswith("{{ GetPrivateInterfaces")
    assert nomad["datacenter"] == "nbg1"


def test_agents_are_secure_by_default_and_configs_hold_no_secret():
    consul = consul_config(SPEC_3)
    nomad = nomad_config(SPEC_3)
    assert consul["acl"]["default_policy"] == "deny" and consul["acl"]["enabled"] is True
    assert consul["tls"]["defaults"]["verify_incoming"] and consul["tls"]["internal_rpc"]["verify_server_hostname"]
    assert consul["ports"]["http"] == -1  # plain HTTP off
    assert nomad["acl"]["enabled"] is True
    assert nomad["tls"]["http"] and nomad["tls"]["rpc"] and nomad["tls"]["verify_https_client"]
    assert "encrypt" not in consul and "tokens" not in consul["acl"]
    assert "encrypt" not in nomad["server"] and "token" not in nomad["consul"]


def test_rendered_configs_are_json_files_in_user_data():
    document = yaml.safe_load(render_cluster_user_data(SPEC_3))
    files = {f["path"]: f for f in document["write_files"]}
    assert json.loads(files["/etc/iot/consul.d/consul.json"]["content"]) == consul_config(SPEC_3)
    assert json.loads(files["/etc/iot/nomad.d/nomad.json"]["content"]) == nomad_config(SPEC_3)
    assert files["/etc/iot/consul.d/consul.json"]["defer"] is True  # consul user exists only after packages


def test_agents_restart_on_failure_and_wait_for_pushed_secrets():
    document = yaml.safe_load(render_cluster_user_data(SPEC_3))
    files = {f["path"]: f["content"] for f in document["write_files"]}
    # `nomad agent` has no -config-dir flag (it would exit "flag provided but not defined"): -config takes the dir.
    for agent, flag in (("consul", "-config-dir"), ("nomad", "-config")):
        dropin = files[f"/etc/systemd/system/{agent}.service.d/10-iot.conf"]
        assert "Restart=on-failure" in dropin
        assert f"ConditionPathExists=/etc/iot/{agent}.d/secrets.json" in dropin
        assert f"ExecStart=\nExecStart=/usr/bin/{agent} agent {flag}=/etc/iot/{agent}.d" in dropin


def test_hosts_open_unprivileged_ping_and_block_metadata():
    for text in (render_cluster_user_data(SPEC_3), render_monitor_user_data("iot-dev-monitor-frankfurt")):
        document = yaml.safe_load(text)
        files = {f["path"]: f["content"] for f in document["write_files"]}
        assert "net.ipv4.ping_group_range = 0 2147483647" in files[common.SYSCTL_PATH]
        assert "169.254.169.254" in files[INSTALLED_SCRIPTS["block-metadata.sh"]]
        assert ["systemctl", "enable", "--now", "iot-block-metadata.service"] in document["runcmd"]


def test_monitor_unit_runs_iot_monitor_from_pushed_files():
    unit = monitor_unit()
    assert f"EnvironmentFile={IMAGE_FILE}" in unit
    assert f"--env-file {ENV_FILE}" in unit
    assert "${IOT_MONITOR_IMAGE} iot monitor" in unit
    assert "Restart=on-failure" in unit
    assert "--publish 80:8000" in unit


def test_unit_renderer_refuses_multiline_values():
    with pytest.raises(ValueError, match="must be one line"):
        render_unit({"Service": [("ExecStart", "a\nb")]})


# --- shell scripts: standalone files, embedded copies and remote command texts -------------------

def _shell_scripts() -> list[Path]:
    return sorted(SCRIPTS_DIR.glob("*.sh"))


def _shellcheck(text: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / name.replace("/", "_")
    path.write_text(text)
    result = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="never: .ci/run installs shellcheck")
def test_standalone_scripts_pass_shellcheck(tmp_path):
    assert {p.name for p in _shell_scripts()} >= {"install-cni.sh", "block-metadata.sh", "cluster-bootstrap.sh"}
    for path in _shell_scripts():
        _shellcheck(path.read_text(), path.name, tmp_path)


def test_embedded_scripts_pass_shellcheck(tmp_path):
    checked = 0
    for text in (render_cluster_user_data(SPEC_3), render_monitor_user_data("m")):
        for entry in yaml.safe_load(text)["write_files"]:
            content = entry["content"]
            if content.startswith(("#!/bin/sh", "#!/bin/bash")):
                _shellcheck(content, entry["path"], tmp_path)
                checked += 1
    assert checked >= 4


def test_remote_command_texts_pass_shellcheck(tmp_path):
    commands = [common.ENSURE_GNUPG, remote.WAIT_CLOUD_INIT, remote.INSTALL_FILES, remote.START_AGENTS, remote.START_MONITOR,
                remote.bootstrap_command(3), remote.as_user(remote.WAIT_CLOUD_INIT, "deploy")]
    for i, command in enumerate(commands):
        _shellcheck(f"#!/bin/sh\n{command}\n", f"remote-{i}.sh", tmp_path)


def test_shellcheck_really_fails_on_bad_shell(tmp_path):
    with pytest.raises(AssertionError):
        _shellcheck("#!/bin/sh\necho $UNQUOTED_VAR\n", "bad.sh", tmp_path)


# --- the file installer that receives secrets over SSH -----------------------------------------

def _install(bundle: dict, destdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "IOT_FILES_DESTDIR": str(destdir)}
    return subprocess.run([sys.executable, str(SCRIPTS_DIR / "install_files.py")], input=json.dumps(bundle),
                          capture_output=True, text=True, env=env)


def test_installer_writes_files_with_their_modes_and_reports_changes(tmp_path):
    owner = __import__("pwd").getpwuid(os.getuid()).pw_name
    bundle = {"files": [
        {"path": "/etc/iot/monitor.env", "mode": "0600", "owner": owner, "content": "REDIS_URL=redis://x\n"},
        {"path": "/etc/iot/consul.d/tls/ca.pem", "mode": "0644", "owner": owner, "content": "CA\n"},
    ]}
    first = _install(bundle, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["changed: /etc/iot/monitor.env", "changed: /etc/iot/consul.d/tls/ca.pem"]
    env_file = tmp_path / "etc/iot/monitor.env"
    assert env_file.read_text() == "REDIS_URL=redis://x\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "etc/iot/consul.d/tls/ca.pem").stat().st_mode) == 0o644
    assert "redis://x" not in first.stdout + first.stderr
    again = _install(bundle, tmp_path)
    assert again.returncode == 0 and again.stdout == ""  # idempotent: nothing changed, nothing restarts


def test_installer_refuses_paths_outside_etc_iot(tmp_path):
    result = _install({"files": [{"path": "/etc/iot/../passwd", "content": "x"}]}, tmp_path)
    assert result.returncode == 2
    assert "only files under /etc/iot/ are allowed" in result.stderr
    assert not (tmp_path / "etc/passwd").exists()


def test_installer_rejects_malformed_bundle(tmp_path):
    result = _install({"nothing": []}, tmp_path)
    assert result.returncode == 2 and "iot-install-files" in result.stderr
