"""The playground's one-shot seed, run as compose runs it: `iot seed` with env."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from egress_targets import TEST_EGRESS_ALLOW_CIDRS

from dashboard.harness import new_tenant, run, setup_tenants, sql

DEMO_KEY = "iotk_seed-test-demo-key-0123456789"


def run_seed(database_url: str, redis_url: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith(("SEED_", "DEMO_"))},
                   "EGRESS_ALLOW_CIDRS": TEST_EGRESS_ALLOW_CIDRS, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DEMO_API_KEY": DEMO_KEY,
                   "SEED_DEVICES": "20", "SEED_TCP_DEVICES": "5", "SEED_FAILING": "3",
                   "SEED_SIMULATOR_HOST": "simulator", "SEED_SIMULATOR_BASE_PORT": "20000", **env}
    return subprocess.run([sys.executable, "-m", "iot", "seed"], env=environment, capture_output=True,
                          text=True, timeout=60)


def last_log(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_seed_creates_the_demo_tenant_once_with_simulated_and_failing_devices(database_url, redis_url) -> None:
    run(setup_tenants(database_url, ()))  # migrate, as the compose `migrate` service does first
    first = run_seed(database_url, redis_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert last_log(first)["devices_created"] == 28
    assert "open http://demo.localhost" in last_log(first)["msg"]
    rows = sql(database_url, "SELECT d.name, d.kind, d.target, d.interval_s FROM devices d JOIN tenants t "
               "ON t.id = d.tenant_id WHERE t.slug = 'demo' ORDER BY d.name")
    by_name = {r["name"]: r for r in rows}
    assert by_name["sensor-000"]["target"] == "http://simulator:20000/"
    assert by_name["sensor-019"]["target"] == "http://simulator:20019/"
    assert (by_name["gateway-00"]["kind"], by_name["gateway-00"]["target"]) == ("tcp", "simulator:20020")
    # Failing devices sit right after the simulated ports, where nothing listens.
    assert [by_name[f"meter-{k:03d}"]["target"] for k in range(3)] == [
        "http://simulator:20025/", "http://simulator:20026/", "http://simulator:20027/"]
    assert {r["interval_s"] for r in rows} == {15}
    assert DEMO_KEY not in first.stdout + first.stderr, "the key never reaches the logs"

    again = run_seed(database_url, redis_url)
    assert again.returncode == 0 and last_log(again)["devices_created"] == 0
    assert last_log(again)["devices_existing"] == 28
    assert sql(database_url, "SELECT count(*) AS n FROM devices")[0]["n"] == 28


def test_seed_refuses_bad_settings_with_the_fix(database_url, redis_url) -> None:
    run(setup_tenants(database_url, ()))
    short = run_seed(database_url, redis_url, DEMO_API_KEY="short")
    assert short.returncode == 2 and "DEMO_API_KEY must be at least 16 characters" in short.stdout
    reserved = run_seed(database_url, redis_url, DEMO_TENANT="docs")
    assert reserved.returncode == 2 and "reserved" in reserved.stdout
    ports = run_seed(database_url, redis_url, SEED_SIMULATOR_BASE_PORT="65530")
    assert ports.returncode == 2 and "below port 65536" in ports.stdout
    assert sql(database_url, "SELECT count(*) AS n FROM tenants")[0]["n"] == 0


def test_seed_takes_over_an_existing_tenant_and_sets_the_known_key(database_url, redis_url) -> None:
    run(setup_tenants(database_url, ()))
    existing = new_tenant(database_url, "demo")
    result = run_seed(database_url, redis_url, SEED_DEVICES="2", SEED_TCP_DEVICES="0", SEED_FAILING="0")
    assert result.returncode == 0 and last_log(result)["tenant_created"] is False
    keys = sql(database_url, "SELECT api_key_hash FROM tenants WHERE id = $1", existing.id)
    assert keys[0]["api_key_hash"] == hashlib.sha256(DEMO_KEY.encode()).hexdigest()
