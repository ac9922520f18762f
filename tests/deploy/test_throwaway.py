"""deploy.throwaway: the e2e stack file is dev-sized, in its own zone, and validated before any cloud call."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from components.config import ConfigError
from deploy.mocks import run_program
from deploy.throwaway import main, write_throwaway

ROOT = Path(__file__).resolve().parents[2]
E2E_ZONE = "e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0"
ACCOUNT = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_throwaway_copies_dev_without_secrets_into_its_own_zone(work_dir):
    path = write_throwaway(work_dir, "e2e-123-1", "dev", "e2e.example.net", E2E_ZONE, ACCOUNT)
    config = yaml.safe_load(path.read_text())["config"]
    dev = yaml.safe_load((work_dir / "Pulumi.dev.yaml").read_text())["config"]
    assert not any(isinstance(v, dict) and "secure" in v for v in config.values()), "secrets come from --secret-env"
    assert config["iot:domain"] == "e2e.example.net"
    assert config["iot:cloudflare"] == {"accountId": ACCOUNT, "zoneId": E2E_ZONE, "ownsZone": True}
    assert config["iot:protect"] is False
    assert config["iot:cluster"] == dev["iot:cluster"] and config["iot:services"] == dev["iot:services"]


def test_the_throwaway_stack_runs_through_the_program_in_the_e2e_zone_only(work_dir):
    write_throwaway(work_dir, "e2e-123-1", "dev", "e2e.example.net", E2E_ZONE, ACCOUNT)
    run = run_program("e2e-123-1", root=work_dir, program=ROOT / "__main__.py")
    zones = {r.inputs["zoneId"] for r in run.resources if r.type.startswith("cloudflare:") and "zoneId" in r.inputs}
    assert zones == {E2E_ZONE}
    names = {r.inputs["name"] for r in run.resources if r.type == "cloudflare:index/dnsRecord:DnsRecord"}
    assert names and all(n == "e2e.example.net" or n.endswith(".e2e.example.net") for n in names)


@pytest.mark.parametrize(
    ("stack", "zone", "domain", "message"),
    [
        ("prod", E2E_ZONE, "e2e.example.net", "not a throwaway name"),
        ("dev", E2E_ZONE, "e2e.example.net", "not a throwaway name"),
        ("e2e-1-1", "fedcba9876543210fedcba9876543210", "e2e.example.net", "stack prod also owns zone"),
        ("e2e-1-1", E2E_ZONE, "my-iot-app.com", "wrong"),
    ],
)
def test_a_throwaway_that_could_touch_dev_or_prod_is_refused(work_dir, stack, zone, domain, message):
    before = sorted(p.name for p in work_dir.iterdir())
    with pytest.raises(ConfigError, match=message):
        write_throwaway(work_dir, stack, "dev", domain, zone, ACCOUNT)
    assert sorted(p.name for p in work_dir.iterdir()) == before


def test_an_existing_stack_file_is_never_overwritten(work_dir, capsys):
    (work_dir / "Pulumi.e2e-7-1.yaml").write_text("config: {}\n")
    args = ["--stack", "e2e-7-1", "--domain", "e2e.example.net", "--zone-id", E2E_ZONE, "--account-id", ACCOUNT,
            "--work-dir", str(work_dir)]
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err
    assert (work_dir / "Pulumi.e2e-7-1.yaml").read_text() == "config: {}\n"
