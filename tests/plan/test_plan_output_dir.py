"""`python -m deploy.plan --out DIR` writes only where it may, deletes only what it wrote.

It used to `rmtree(DIR)` first, so `--out .` deleted the repository. Now a directory it did not
create (no marker file) must be empty, and a re-run removes only the files its marker lists.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import plan

ROOT = Path(__file__).resolve().parents[2]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_foreign_non_empty_directory_is_refused_and_left_intact(tmp_path, capsys):
    foreign = tmp_path / "project"
    (foreign / "src").mkdir(parents=True)
    (foreign / "README.md").write_text("mine\n")
    (foreign / "src" / "main.py").write_text("print('mine')\n")
    before = snapshot(foreign)
    assert plan.main(["--stack", "dev", "--out", str(foreign)]) == plan.EXIT_REFUSED
    assert snapshot(foreign) == before
    err = capsys.readouterr().err
    assert str(foreign) in err and "not empty" in err and plan.MARKER in err


def test_dot_is_refused_from_the_command_line_and_the_repository_survives(tmp_path):
    """The reported accident: `python -m deploy.plan --stack dev --out .` in a checkout."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "Pulumi.yaml").write_text("name: iot\n")
    (checkout / ".git").mkdir()
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    before = snapshot(checkout)
    done = subprocess.run([sys.executable, "-m", "deploy.plan", "--stack", "dev", "--out", "."], cwd=checkout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == plan.EXIT_REFUSED, done.stdout + done.stderr
    assert snapshot(checkout) == before


def test_a_relative_output_directory_works_and_is_marked(tmp_path, monkeypatch):
    """`make plan` passes a relative path (build/plan/<stack>)."""
    monkeypatch.chdir(tmp_path)
    assert plan.main(["--stack", "dev", "--out", "build/plan/dev"]) == 0
    listed = plan.read_marker(Path("build/plan/dev"))
    assert "jobs/traefik.rendered/secrets/traefik.yml" in listed and "resources.md" in listed
    assert plan.main(["--stack", "dev", "--out", "build/plan/dev"]) == 0, "and can be planned into again"


def test_a_file_in_place_of_the_directory_is_refused(tmp_path):
    target = tmp_path / "plan"
    target.write_text("not a directory\n")
    assert plan.main(["--stack", "dev", "--out", str(target)]) == plan.EXIT_REFUSED
    assert target.read_text() == "not a directory\n"


def test_an_empty_directory_is_used_and_marked(tmp_path):
    out = tmp_path / "plan"
    out.mkdir()
    assert plan.main(["--stack", "dev", "--out", str(out)]) == 0
    assert (out / plan.MARKER).is_file() and (out / "resources.md").is_file()


def test_a_rerun_replaces_only_what_the_plan_wrote(tmp_path):
    out = tmp_path / "plan"
    assert plan.main(["--stack", "dev", "--out", str(out)]) == 0
    stale = out / "user-data" / "iot-dev-9-nbg1.yaml"  # as if a node had been removed since
    listed = plan.read_marker(out)
    stale.write_text("#cloud-config\n")
    plan.write_marker(out, "dev", [*listed, "user-data/iot-dev-9-nbg1.yaml"])
    (out / "NOTES.md").write_text("my review notes\n")
    (out / "jobs" / "mine.txt").write_text("keep me\n")
    assert plan.main(["--stack", "dev", "--out", str(out)]) == 0
    assert not stale.exists(), "a file the previous plan wrote is gone"
    assert (out / "NOTES.md").read_text() == "my review notes\n"
    assert (out / "jobs" / "mine.txt").read_text() == "keep me\n"
    assert set(plan.read_marker(out)) == {
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name not in (plan.MARKER, "NOTES.md", "mine.txt")
    }


def test_a_marker_listing_paths_outside_the_directory_deletes_nothing_outside(tmp_path):
    out = tmp_path / "plan"
    assert plan.main(["--stack", "dev", "--out", str(out)]) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("outside\n")
    plan.write_marker(out, "dev", [*plan.read_marker(out), "../victim.txt", str(victim)])
    assert plan.main(["--stack", "dev", "--out", str(out)]) == 0
    assert victim.read_text() == "outside\n"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_resources_md_never_cuts_firewall_rules_secret_markers_or_protect_flags(stack, tmp_path):
    out = tmp_path / "plan"
    assert plan.main(["--stack", stack, "--out", str(out)]) == 0
    text = (out / "resources.md").read_text()
    run = plan._cached_run(stack)
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| ") and " | " in line}
    for resource in run.resources:
        if resource.type == "hcloud:index/firewall:Firewall":
            row = rows[resource.name]
            for rule in resource.inputs["rules"]:
                assert f"{rule['protocol']}/{rule['port']} from" in row
                for source in rule["sourceIps"]:
                    assert source in row, f"{resource.name}: {source} cut from the row"
        if resource.type == "linode:index/firewall:Firewall":
            row = rows[resource.name]
            for rule in resource.inputs["inbounds"]:
                for source in [*(rule.get("ipv4s") or []), *(rule.get("ipv6s") or [])]:
                    assert source in row
        if resource.name in rows:
            row = rows[resource.name]
            assert "..." not in row, f"{resource.name}: a truncated cell"
            if resource.options.get("protect"):
                assert "**protected**" in row
            secrets = [k for k, v in resource.inputs.items() if v == "[secret]"]
            for key in secrets:
                if key in (plan.KEY_INPUTS.get(resource.type) or ()):
                    assert f"{key}=[secret]" in row
    assert "<br>" in text, "long cells wrap"
