"""Host scripts run against stand-in binaries (no consul/nomad/iptables/cloud-init effects here).

The stand-ins are tiny shell programs on PATH that log their arguments and stdin and simulate the
state the real tool would report, so the scripts' logic (idempotency, exit codes, where secrets go)
is exercised for real.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from cloud_init.script_files import SCRIPTS_DIR
from components import remote

MGMT, AGENT, NOMAD_CONSUL, CATALOG, BOOTSTRAP = (
    "11111111-aaaa-4000-8000-000000000001", "22222222-aaaa-4000-8000-000000000002",
    "33333333-aaaa-4000-8000-000000000003", "44444444-aaaa-4000-8000-000000000004",
    "55555555-aaaa-4000-8000-000000000005",
)


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


def fake_cluster(bin_dir: Path, ready_nodes: int) -> None:
    """consul/nomad stand-ins: tokens exist once created; Nomad ACLs once bootstrapped."""
    stub(bin_dir, "consul", r'''
echo "consul $* token=${CONSUL_HTTP_TOKEN}" >> "$STATE/calls"
case "$1 $2 $3" in
  "acl token read")   grep -qx "$CONSUL_HTTP_TOKEN" "$STATE/consul-tokens" 2>/dev/null ;;
  "acl policy read")  grep -qx "$5" "$STATE/consul-policies" 2>/dev/null ;;
  "acl policy create") echo "$5" >> "$STATE/consul-policies" ;;
  *) exit 3 ;;
esac
''')
    # Token creation goes through Consul's HTTP API: body on stdin, management token in a header file.
    stub(bin_dir, "curl", r'''
echo "curl $*" >> "$STATE/calls"
header=""; url=""
while [ $# -gt 0 ]; do case "$1" in -H) header="$2"; shift 2 ;; --cacert|-X|--data-binary) shift 2 ;; -*) shift ;; *) url="$1"; shift ;; esac; done
[ "$url" = "$CONSUL_HTTP_ADDR/v1/acl/token" ] || exit 3
cat "${header#@}" >> "$STATE/consul-headers"
body="$(cat)"
printf '%s\n' "$body" | sed -n 's/.*"SecretID":"\([^"]*\)".*/\1/p' >> "$STATE/consul-tokens"
''')
    stub(bin_dir, "nomad", rf'''
echo "nomad $* token=${{NOMAD_TOKEN:-}}" >> "$STATE/calls"
case "$1 $2" in
  "operator api") echo '"10.0.1.11:4647"' ;;
  "acl token") [ -f "$STATE/nomad-bootstrapped" ] && [ "$NOMAD_TOKEN" = "$(cat "$STATE/nomad-bootstrapped")" ] ;;
  "acl bootstrap") [ "$3" = "-" ] && cat > "$STATE/nomad-bootstrapped" ;;
  "node status") [ -f "$STATE/nomad-bootstrapped" ] || exit 1; for i in $(seq {ready_nodes}); do echo "node$i"; done ;;
  *) exit 3 ;;
esac
''')
    stub(bin_dir, "sleep", "exit 0\n")  # the stand-ins answer at once; keep the poll loop fast


def tokens_stdin() -> str:
    return "".join(f"{t}\n" for t in (MGMT, AGENT, NOMAD_CONSUL, CATALOG, BOOTSTRAP))


def test_bootstrap_creates_tokens_and_nomad_acls_once(sandbox):
    bin_dir, state, env = sandbox
    fake_cluster(bin_dir, ready_nodes=3)
    (state / "consul-tokens").write_text(MGMT + "\n")  # initial_management exists once Consul has a leader
    first = run_script("cluster-bootstrap.sh", ["3"], env, tokens_stdin())
    assert first.returncode == 0, first.stderr
    assert "ok: Nomad ACLs bootstrapped" in first.stdout
    assert "ok: 3 ready Nomad client node(s)" in first.stdout
    assert (state / "nomad-bootstrapped").read_text() == BOOTSTRAP  # read from stdin, no newline
    assert set((state / "consul-tokens").read_text().split()) == {MGMT, AGENT, NOMAD_CONSUL, CATALOG}
    assert set((state / "consul-policies").read_text().split()) == {"iot-agent", "iot-nomad", "iot-catalog-read"}
    for token in (MGMT, AGENT, NOMAD_CONSUL, CATALOG, BOOTSTRAP):
        assert token not in first.stdout + first.stderr
    # No token is ever a process argument (argv is world-readable); the management token is a header.
    argv = [line.split(" token=")[0] for line in (state / "calls").read_text().splitlines()]
    assert not [a for a in argv if any(t in a for t in (MGMT, AGENT, NOMAD_CONSUL, CATALOG, BOOTSTRAP))]
    assert (state / "consul-headers").read_text().split("\n")[0] == f"X-Consul-Token: {MGMT}"

    (state / "calls").write_text("")
    again = run_script("cluster-bootstrap.sh", ["3"], env, tokens_stdin())
    assert again.returncode == 0, again.stderr
    assert "ok: Nomad ACLs already bootstrapped" in again.stdout
    calls = (state / "calls").read_text()
    assert "acl bootstrap" not in calls and "/v1/acl/token" not in calls and "acl policy create" not in calls


def test_bootstrap_times_out_when_clients_never_become_ready(sandbox):
    bin_dir, state, env = sandbox
    fake_cluster(bin_dir, ready_nodes=1)
    (state / "consul-tokens").write_text(MGMT + "\n")
    result = run_script("cluster-bootstrap.sh", ["3"], {**env, "IOT_BOOTSTRAP_TIMEOUT": "1"}, tokens_stdin())
    assert result.returncode != 0
    assert "timed out after 1s waiting for 3 ready Nomad client node(s)" in result.stderr


def test_bootstrap_requires_the_node_count(sandbox):
    _, _, env = sandbox
    result = run_script("cluster-bootstrap.sh", [], env, tokens_stdin())
    assert result.returncode != 0 and "usage: iot-cluster-bootstrap <expected-ready-nodes>" in result.stderr


@pytest.mark.parametrize(("status", "ok"), [(0, True), (2, True), (1, False)])
def test_wait_for_cloud_init_tolerates_warnings_only(sandbox, status, ok):
    bin_dir, _, env = sandbox
    stub(bin_dir, "cloud-init", f"exit {status}\n")
    result = subprocess.run(["sh", "-c", remote.WAIT_CLOUD_INIT], env=env, capture_output=True)
    assert (result.returncode == 0) is ok


def test_metadata_block_inserts_each_rule_once(sandbox):
    bin_dir, state, env = sandbox
    stub(bin_dir, "iptables", r'''
rule="$*"
case "$3" in
  -C) grep -qxF -- "${rule/-C/-I}" "$STATE/rules" 2>/dev/null ;;
  -I) echo "$rule" >> "$STATE/rules" ;;
  -n) exit 0 ;;  # DOCKER-USER chain exists
  *) exit 3 ;;
esac
''')
    for _ in range(2):
        result = run_script("block-metadata.sh", [], env)
        assert result.returncode == 0, result.stderr
    rules = (state / "rules").read_text().splitlines()
    assert rules == [
        "-t raw -I PREROUTING -d 169.254.169.254/32 -j DROP",
        "-t filter -I DOCKER-USER -d 169.254.169.254/32 -j REJECT --reject-with icmp-port-unreachable",
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
