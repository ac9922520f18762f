"""Rendered user data and pushed node files: valid cloud-config, known keys only, small, secret-free,
first boot fails fast, apt keys are the vendors' keys, scripts lint clean."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from cloud_init import apt_keys, common
from cloud_init.cluster import (
    AGENT_UNITS,
    ClusterNodeSpec,
    cluster_node_files,
    consul_config,
    nomad_config,
    private_address_template,
    render_cluster_user_data,
)
from cloud_init.monitor import (
    ENV_FILE,
    IMAGE_FILE,
    UNITS,
    monitor_node_files,
    monitor_unit,
    render_monitor_user_data,
)
from cloud_init.script_files import INSTALLED_SCRIPTS, SCRIPTS_DIR
from cloud_init.units import render_unit
from components import remote

SCHEMA_PATH = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")
SPEC_3 = ClusterNodeSpec(
    hostname="iot-prod-2-nbg1", datacenter="nbg1", private_ip="10.0.1.12", private_cidr="10.0.1.0/24",
    server_ips=("10.0.1.11", "10.0.1.12", "10.0.1.13"), consul_version="1.22.7", nomad_version="2.0.7",
    cni_version="1.6.2",
)
SYSTEM_PYTHON = "/usr/bin/python3"  # cloud-init's own interpreter (its modules live in dist-packages)


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


def pushed(files) -> dict[str, object]:
    return {f.path: f for f in files}


# --- user data: first boot only --------------------------------------------------------------

def test_user_data_keeps_only_first_boot_needs():
    cluster = yaml.safe_load(render_cluster_user_data(SPEC_3))
    monitor = yaml.safe_load(render_monitor_user_data("iot-dev-monitor-frankfurt"))
    assert [f["path"] for f in cluster["write_files"]] == [INSTALLED_SCRIPTS["install-cni.sh"],
                                                           INSTALLED_SCRIPTS["first-boot-check.sh"]]
    assert [f["path"] for f in monitor["write_files"]] == [INSTALLED_SCRIPTS["first-boot-check.sh"]]
    # Agent configs, units, policies and scripts that may change are pushed instead: an edit of any
    # of them must not leave running nodes behind.
    text = render_cluster_user_data(SPEC_3)
    for later in ("consul.json", "nomad.json", "10-iot.conf", "consul-policies", "iot-cluster-bootstrap",
                  "iot-block-metadata", "retry_join", "bootstrap_expect"):
        assert later not in text, later


def test_cluster_packages_are_pinned_from_repositories_with_embedded_keys():
    document = yaml.safe_load(render_cluster_user_data(SPEC_3))
    assert ["consul", "1.22.7-1"] in document["packages"]
    assert ["nomad", "2.0.7-1"] in document["packages"]
    assert "docker-ce" in document["packages"]
    sources = document["apt"]["sources"]
    assert set(sources) == {"hashicorp", "docker"}
    for name, source in sources.items():
        assert source["source"].startswith("deb [signed-by=$KEY_FILE] https://"), name
        assert source["key"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----"), name
        assert "keyid" not in source and "keyserver" not in source, f"{name}: no keyserver at boot"


def _gpg_show(armored: str, tmp_path: Path) -> list[list[str]]:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    result = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--with-colons", "--import-options",
                             "show-only", "--import"], input=armored, capture_output=True, text=True, check=True)
    return [line.split(":") for line in result.stdout.splitlines()]


@pytest.mark.parametrize("key", [apt_keys.HASHICORP, apt_keys.DOCKER], ids=lambda k: k.name)
def test_embedded_apt_keys_are_the_published_keys(key, tmp_path):
    # gpg, not our parser, reads the embedded key: primary fingerprint as the vendor publishes it,
    # valid self-signatures, and far enough from expiry.
    records = _gpg_show(apt_keys.armored_key(key), tmp_path)
    fingerprints = [r[9] for r in records if r[0] == "fpr"]
    assert fingerprints[0] == key.fingerprint
    primary = next(r for r in records if r[0] == "pub")
    assert primary[1] not in ("r", "e", "i"), f"{key.name} key is revoked, expired or invalid"
    expires = primary[6]
    if expires:
        import time

        assert int(expires) - time.time() > 90 * 86400, f"{key.name} key expires within 90 days: refresh it"


def test_a_swapped_or_damaged_key_file_is_refused(tmp_path, monkeypatch):
    # Docker's key in HashiCorp's place: refused with both fingerprints named.
    (tmp_path / apt_keys.HASHICORP.file).write_text((apt_keys.KEYS_DIR / apt_keys.DOCKER.file).read_text())
    monkeypatch.setattr(apt_keys, "KEYS_DIR", tmp_path)
    apt_keys.armored_key.cache_clear()
    try:
        with pytest.raises(apt_keys.AptKeyError, match=f"{apt_keys.DOCKER.fingerprint}, not {apt_keys.HASHICORP.fingerprint}"):
            apt_keys.armored_key(apt_keys.HASHICORP)
        damaged = (apt_keys.KEYS_DIR / apt_keys.HASHICORP.file).read_text().replace("mQINB", "mQINC", 1)
        (tmp_path / apt_keys.HASHICORP.file).write_text(damaged)
        apt_keys.armored_key.cache_clear()
        with pytest.raises(apt_keys.AptKeyError, match="checksum mismatch"):
            apt_keys.armored_key(apt_keys.HASHICORP)
    finally:
        apt_keys.armored_key.cache_clear()


# --- first boot fails fast: cloud-init's own runcmd + scripts_user handlers, stand-in commands -----

CLOUD_INIT_RUNNER = r'''
import json, logging, os, sys
import yaml
from cloudinit.config import cc_runcmd, cc_scripts_user

class Cloud:
    def __init__(self, path):
        self.path = path
    def get_ipath(self, name=None):
        return os.path.join(self.path, name) if name else self.path
    get_ipath_cur = get_ipath

cfg = yaml.safe_load(open(sys.argv[1]))
cloud = Cloud(sys.argv[2])
log = logging.getLogger("test")
cc_runcmd.handle("runcmd", cfg, cloud, log, [])
try:
    cc_scripts_user.handle("scripts_user", cfg, cloud, log, [])
except RuntimeError as exc:
    print(f"BOOT FAILED: {exc}")
    sys.exit(1)
print("BOOT OK")
'''


def run_first_boot(user_data: str, tmp_path: Path, failing: str | None = None) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """Run the runcmd of `user_data` as cloud-init would (runcmd module writes the script, scripts_user
    runs it), with every command a logging stand-in; `failing` names the one that exits 7.
    Absolute /usr/local/sbin paths in the rendered user data are mapped into the sandbox."""
    bin_dir, sbin, state = tmp_path / "bin", tmp_path / "sbin", tmp_path / "state"
    for d in (bin_dir, sbin, state):
        d.mkdir()
    calls = tmp_path / "calls"
    for name in ("systemctl", "modprobe", "sysctl", "iot-install-cni", "iot-first-boot-check"):
        target = sbin if name.startswith("iot-") else bin_dir
        (target / name).write_text(f"#!/bin/sh\necho \"{name} $*\" >> {calls}\n"
                                   + ("exit 7\n" if name == failing else "exit 0\n"))
        (target / name).chmod(0o755)
    data = tmp_path / "user-data.yaml"
    data.write_text(user_data.replace("/usr/local/sbin/", f"{sbin}/"))
    runner = tmp_path / "runner.py"
    runner.write_text(CLOUD_INIT_RUNNER)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "IOT_STATE_DIR": str(state), "HOME": str(tmp_path)}
    result = subprocess.run([SYSTEM_PYTHON, str(runner), str(data), str(tmp_path / "instance")], env=env,
                            capture_output=True, text=True, timeout=60)
    return result, calls, state


def test_first_boot_runs_every_step_in_order(tmp_path):
    result, calls, state = run_first_boot(render_cluster_user_data(SPEC_3), tmp_path)
    assert result.returncode == 0 and "BOOT OK" in result.stdout, result.stdout + result.stderr
    ran = calls.read_text().splitlines()
    assert ran == ["systemctl enable --now docker.service", "iot-install-cni 1.6.2",
                   "iot-first-boot-check docker.service cni=1.6.2 consul=1.22.7-1 nomad=2.0.7-1"]
    assert not (state / "first-boot.failed").exists()


@pytest.mark.parametrize(("failing", "step"), [
    ("systemctl", "enable Docker"),
    ("iot-install-cni", "install CNI plugins 1.6.2"),
    ("iot-first-boot-check", "check Docker, CNI plugins and pinned agent versions"),
])
def test_any_failing_first_boot_step_fails_the_boot(tmp_path, failing, step):
    result, calls, state = run_first_boot(render_cluster_user_data(SPEC_3), tmp_path, failing=failing)
    assert result.returncode == 1 and "BOOT FAILED: Runparts: 1 failures (runcmd)" in result.stdout, result.stdout
    assert (state / "first-boot.failed").read_text() == f"{step} (exit status 7)\n"
    assert calls.read_text().splitlines()[-1].startswith(failing)  # nothing after the failing step ran
    assert f"step '{step}' failed with exit status 7" in result.stdout + result.stderr


def test_monitor_first_boot_fails_when_docker_does_not_start(tmp_path):
    result, _, state = run_first_boot(render_monitor_user_data("m"), tmp_path, failing="systemctl")
    assert result.returncode == 1 and "BOOT FAILED" in result.stdout
    assert (state / "first-boot.failed").read_text() == "enable Docker (exit status 7)\n"


def test_runcmd_without_the_prologue_would_not_fail(tmp_path):
    # The reason for the prologue: cloud-init's runcmd is a plain `sh` script, which goes on after a
    # failing command and reports only the last command's status.
    document = yaml.safe_load(render_cluster_user_data(SPEC_3))
    document["runcmd"] = [[step[2], *step[3:]] for step in document["runcmd"][1:]]
    result, _, _ = run_first_boot(common.dump_cloud_config(document), tmp_path, failing="iot-install-cni")
    assert result.returncode == 0 and "BOOT OK" in result.stdout


def test_wait_step_names_the_failed_first_boot_step(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("cloud-init", 'if [ "$2" = --long ]; then echo "status: error"; fi; exit 1'),
                       ("hostname", "echo iot-prod-2-nbg1"),
                       ("cat", f'exec /bin/cat "{tmp_path}/failed"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "failed").write_text("install CNI plugins 1.6.2 (exit status 7)\n")
    result = subprocess.run(["sh", "-c", remote.WAIT_CLOUD_INIT], env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "first boot failed on iot-prod-2-nbg1: install CNI plugins 1.6.2 (exit status 7)" in result.stderr
    assert "status: error" in result.stderr


def test_first_boot_check_names_what_is_missing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text('#!/bin/sh\n[ "$1" = is-active ] && [ "$2" = --quiet ] && exit 3\necho inactive\n')
    (bin_dir / "dpkg-query").write_text('#!/bin/sh\n[ "$3" = consul ] && printf 1.22.7-1 && exit 0\nexit 1\n')
    for name in ("systemctl", "dpkg-query"):
        (bin_dir / name).chmod(0o755)
    cni = tmp_path / "cni"
    cni.mkdir()
    result = subprocess.run(["sh", str(SCRIPTS_DIR / "first-boot-check.sh"), "docker.service", "cni=1.6.2",
                             "consul=1.22.7-1", "nomad=2.0.7-1"],
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "IOT_CNI_DIR": str(cni)},
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "docker.service is inactive" in result.stderr
    assert "CNI plugins 1.6.2 are not installed" in result.stderr
    assert "nomad is not installed, 2.0.7-1 is pinned" in result.stderr
    assert "consul" not in result.stderr  # the pinned version is there


# --- pushed node files ---------------------------------------------------------------------------

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
    # Dead servers are pruned from Raft when a node vanishes without leaving.
    assert consul["autopilot"]["cleanup_dead_servers"] is True
    assert nomad["autopilot"]["cleanup_dead_servers"] is True


def test_agent_configs_are_pushed_json_that_restart_their_agent():
    files = pushed(cluster_node_files(SPEC_3))
    consul = files["/etc/iot/consul.d/consul.json"]
    nomad = files["/etc/iot/nomad.d/nomad.json"]
    assert json.loads(consul.content) == consul_config(SPEC_3) and consul.owner == "consul"
    assert json.loads(nomad.content) == nomad_config(SPEC_3)
    assert consul.on_change == ("restart:consul.service",) and nomad.on_change == ("restart:nomad.service",)
    assert files["/etc/iot/versions.env"].on_change == ("packages",)
    assert files["/etc/iot/versions.env"].content == "CONSUL_VERSION=1.22.7\nNOMAD_VERSION=2.0.7\nCNI_VERSION=1.6.2\n"
    assert files["/etc/iot/cluster.env"].content == (
        "NODE_NAME=iot-prod-2-nbg1\nNODE_IP=10.0.1.12\nSERVER_IPS=10.0.1.11 10.0.1.12 10.0.1.13\n")
    assert AGENT_UNITS == ("iot-block-metadata.service", "consul.service", "nomad.service")


def test_nomad_pulls_with_the_pushed_registry_credentials():
    auth = nomad_config(SPEC_3)["plugin"]["docker"]["config"]["auth"]
    assert auth == {"config": "/etc/iot/docker/config.json"}


def test_agents_restart_on_failure_and_wait_for_pushed_secrets():
    files = pushed(cluster_node_files(SPEC_3))
    # `nomad agent` has no -config-dir flag (it would exit "flag provided but not defined"): -config takes the dir.
    for agent, flag in (("consul", "-config-dir"), ("nomad", "-config")):
        dropin = files[f"/etc/systemd/system/{agent}.service.d/10-iot.conf"]
        assert "Restart=on-failure" in dropin.content
        assert f"ConditionPathExists=/etc/iot/{agent}.d/secrets.json" in dropin.content
        assert f"ExecStart=\nExecStart=/usr/bin/{agent} agent {flag}=/etc/iot/{agent}.d" in dropin.content
        assert dropin.on_change == ("daemon-reload", f"restart:{agent}.service")


def test_hosts_open_unprivileged_ping_and_block_metadata_on_both_families():
    for files in (pushed(cluster_node_files(SPEC_3)), pushed(monitor_node_files("ghcr.io/x/iot:1"))):
        assert "net.ipv4.ping_group_range = 0 2147483647" in files[common.SYSCTL_PATH].content
        script = files[INSTALLED_SCRIPTS["block-metadata.sh"]].content
        assert "169.254.169.254/32" in script and "fd00:a9fe:a9fe::1/128" in script
        unit = files["/etc/systemd/system/iot-block-metadata.service"]
        assert unit.on_change == ("daemon-reload", "restart:iot-block-metadata.service")
    assert UNITS[0] == AGENT_UNITS[0] == "iot-block-metadata.service"  # blocked before any container runs


def test_monitor_unit_runs_iot_monitor_from_pushed_files():
    unit = monitor_unit()
    assert f"EnvironmentFile={IMAGE_FILE}" in unit
    assert f"--env-file {ENV_FILE}" in unit
    assert "${IOT_MONITOR_IMAGE} iot monitor" in unit
    assert "Environment=DOCKER_CONFIG=/etc/iot/docker" in unit  # pulls with the pushed credentials
    assert "Restart=on-failure" in unit
    assert "--publish 80:8000" in unit
    files = pushed(monitor_node_files("ghcr.io/x/iot:1"))
    assert files["/etc/systemd/system/iot-monitor.service"].on_change == ("daemon-reload", "restart:iot-monitor.service")
    assert files[IMAGE_FILE].content == "IOT_MONITOR_IMAGE=ghcr.io/x/iot:1\n"


def test_unit_renderer_refuses_multiline_values():
    with pytest.raises(ValueError, match="must be one line"):
        render_unit({"Service": [("ExecStart", "a\nb")]})


# --- shell scripts: standalone files, the rendered runcmd and remote command texts -------------------

def _shell_scripts() -> list[Path]:
    return sorted(SCRIPTS_DIR.glob("*.sh"))


def _shellcheck(text: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / name.replace("/", "_")
    path.write_text(text)
    result = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="never: .ci/run installs shellcheck")
def test_standalone_scripts_pass_shellcheck(tmp_path):
    assert {p.name for p in _shell_scripts()} >= {"install-cni.sh", "block-metadata.sh", "cluster-bootstrap.sh",
                                                    "apply.sh", "health-gate.sh", "node-leave.sh",
                                                    "first-boot-check.sh"}
    for path in _shell_scripts():
        _shellcheck(path.read_text(), path.name, tmp_path)


def test_rendered_runcmd_passes_shellcheck(tmp_path):
    # Exactly the script cloud-init writes (its own shellify), for both kinds of node.
    for name, text in (("cluster", render_cluster_user_data(SPEC_3)), ("monitor", render_monitor_user_data("m"))):
        runcmd = yaml.safe_load(text)["runcmd"]
        script = subprocess.run([SYSTEM_PYTHON, "-c", "import json,sys; from cloudinit.util import shellify; "
                                 "print(shellify(json.load(sys.stdin)), end='')"],
                                input=json.dumps(runcmd), capture_output=True, text=True, check=True).stdout
        assert script.startswith("#!/bin/sh\nset -eu\n")
        _shellcheck(script, f"runcmd-{name}.sh", tmp_path)


def test_remote_command_texts_pass_shellcheck(tmp_path):
    commands = [common.ENSURE_GNUPG, remote.WAIT_CLOUD_INIT, remote.INSTALL_FILES, remote.HEALTH_GATE,
                remote.NODE_LEAVE, remote.NO_OP, remote.apply_command(AGENT_UNITS, start_only=True),
                remote.apply_command(UNITS), remote.bootstrap_command(3),
                remote.as_user(remote.WAIT_CLOUD_INIT, "deploy")]
    for i, command in enumerate(commands):
        _shellcheck(f"#!/bin/sh\n{command}\n", f"remote-{i}.sh", tmp_path)


def test_shellcheck_really_fails_on_bad_shell(tmp_path):
    with pytest.raises(AssertionError):
        _shellcheck("#!/bin/sh\necho $UNQUOTED_VAR\n", "bad.sh", tmp_path)


# --- the file installer the push runs (the exact command text, inline python3 -c) -----------------

def _install(bundle: dict, destdir: Path, state: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "IOT_FILES_DESTDIR": str(destdir), "IOT_STATE_DIR": str(state)}
    return subprocess.run(["sh", "-c", remote.INSTALL_FILES], input=json.dumps(bundle),
                          capture_output=True, text=True, env=env)


def test_installer_writes_files_with_their_modes_and_records_pending_actions(tmp_path):
    owner = __import__("pwd").getpwuid(os.getuid()).pw_name
    state = tmp_path / "state"
    bundle = {"files": [
        {"path": "/etc/iot/monitor.env", "mode": "0600", "owner": owner, "content": "REDIS_URL=redis://x\n",
         "on_change": ["restart:iot-monitor.service"]},
        {"path": "/etc/iot/consul.d/tls/ca.pem", "mode": "0644", "owner": owner, "content": "CA\n",
         "on_change": ["reload:consul.service"]},
        {"path": "/etc/systemd/system/consul.service.d/10-iot.conf", "mode": "0644", "owner": owner,
         "content": "[Service]\n", "on_change": ["daemon-reload", "restart:consul.service"]},
    ]}
    first = _install(bundle, tmp_path, state)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["changed: /etc/iot/monitor.env", "changed: /etc/iot/consul.d/tls/ca.pem",
                                         "changed: /etc/systemd/system/consul.service.d/10-iot.conf"]
    env_file = tmp_path / "etc/iot/monitor.env"
    assert env_file.read_text() == "REDIS_URL=redis://x\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "etc/iot/consul.d/tls/ca.pem").stat().st_mode) == 0o644
    assert "redis://x" not in first.stdout + first.stderr
    assert sorted(p.name for p in (state / "pending").iterdir()) == [
        "daemon-reload", "reload:consul.service", "restart:consul.service", "restart:iot-monitor.service"]

    for marker in (state / "pending").iterdir():
        marker.unlink()  # as iot-apply does once it carried them out
    again = _install(bundle, tmp_path, state)
    assert again.returncode == 0 and again.stdout == ""  # nothing changed: nothing pending, nothing restarts
    assert list((state / "pending").iterdir()) == []

    bundle["files"][1]["content"] = "NEW CA\n"  # a renewed certificate: a reload, nothing else
    third = _install(bundle, tmp_path, state)
    assert third.stdout.splitlines() == ["changed: /etc/iot/consul.d/tls/ca.pem"]
    assert [p.name for p in (state / "pending").iterdir()] == ["reload:consul.service"]


@pytest.mark.parametrize("path", ["/etc/iot/../passwd", "/etc/passwd", "/usr/local/sbin/evil", "/root/.ssh/authorized_keys"])
def test_installer_refuses_paths_outside_its_roots(tmp_path, path):
    bundle = {"files": [{"path": "/etc/iot/ok", "content": "x"}, {"path": path, "content": "x"}]}
    result = _install(bundle, tmp_path, tmp_path / "state")
    assert result.returncode == 2
    assert "only files under /etc/iot/" in result.stderr
    assert not (tmp_path / "etc/iot/ok").exists()  # a bad bundle writes nothing at all


def test_installer_rejects_malformed_bundles_and_unknown_actions(tmp_path):
    result = _install({"nothing": []}, tmp_path, tmp_path / "state")
    assert result.returncode == 2 and "iot-install-files" in result.stderr
    result = _install({"files": [{"path": "/etc/iot/x", "content": "x", "on_change": ["reboot"]}]},
                      tmp_path, tmp_path / "state")
    assert result.returncode == 2 and "unknown on_change action 'reboot'" in result.stderr


def test_installer_runs_through_sudo_for_a_non_root_ssh_user(tmp_path):
    # iot:sshUser other than root wraps every command in `sudo sh -c '...'`: the inline installer
    # (a long quoted python3 -c) must survive that second level of quoting.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "sudo").chmod(0o755)
    owner = __import__("pwd").getpwuid(os.getuid()).pw_name
    bundle = {"files": [{"path": "/etc/iot/x.env", "mode": "0600", "owner": owner, "content": "A='b c'\n"}]}
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "IOT_FILES_DESTDIR": str(tmp_path / "root"),
           "IOT_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run(["sh", "-c", remote.as_user(remote.INSTALL_FILES, "deploy")], input=json.dumps(bundle),
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "root/etc/iot/x.env").read_text() == "A='b c'\n"
