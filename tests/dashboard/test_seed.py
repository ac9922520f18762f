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


def test_seed_converges_to_new_settings_in_place(database_url, redis_url) -> None:
    """Seeded with the compose defaults outside compose (targets at `simulator:...`), then re-run with the
    right settings: the same devices now point at the new targets instead of staying DOWN forever."""
    import redis

    run(setup_tenants(database_url, ()))
    first = run_seed(database_url, redis_url)  # 20 HTTP + 5 TCP + 3 failing at simulator:20000..
    assert first.returncode == 0, first.stdout + first.stderr
    ids_before = {r["name"]: r["id"] for r in sql(database_url, "SELECT id, name FROM devices")}
    demo = sql(database_url, "SELECT id FROM tenants WHERE slug = 'demo'")[0]["id"]
    own = sql(database_url, "INSERT INTO devices (tenant_id, name, kind, target, interval_s, timeout_ms, token_hash) "
              "VALUES ($1, 'my-own-router', 'icmp', '127.0.0.1', 60, 1000, 'x') RETURNING id", demo)[0]["id"]
    client = redis.Redis.from_url(redis_url)
    version_before = int(client.get("devices:version") or 0)

    again = run_seed(database_url, redis_url, SEED_SIMULATOR_HOST="127.0.0.1", SEED_SIMULATOR_BASE_PORT="31000",
                     SEED_INTERVAL_S="10", SEED_DEVICES="10", SEED_TCP_DEVICES="5", SEED_FAILING="3")
    assert again.returncode == 0, again.stdout + again.stderr
    result = last_log(again)
    rows = {r["name"]: r for r in sql(database_url, "SELECT id, name, kind, target, interval_s FROM devices")}
    assert rows["sensor-000"]["target"] == "http://127.0.0.1:31000/"
    assert rows["sensor-009"]["target"] == "http://127.0.0.1:31009/"
    assert (rows["gateway-00"]["kind"], rows["gateway-00"]["target"]) == ("tcp", "127.0.0.1:31010")
    assert [rows[f"meter-{k:03d}"]["target"] for k in range(3)] == [
        "http://127.0.0.1:31015/", "http://127.0.0.1:31016/", "http://127.0.0.1:31017/"]
    seeded = {n: r for n, r in rows.items() if n != "my-own-router"}
    assert {r["interval_s"] for r in seeded.values()} == {10}
    assert "simulator" not in " ".join(r["target"] for r in seeded.values())
    # Updated in place (their history stays); the ones the seed no longer declares are gone; the tenant's own stay.
    assert all(rows[name]["id"] == ids_before[name] for name in seeded)
    assert not any(f"sensor-{i:03d}" in rows for i in range(10, 20))
    assert rows["my-own-router"]["id"] == own and rows["my-own-router"]["target"] == "127.0.0.1"
    assert (result["devices_created"], result["devices_updated"], result["devices_deleted"]) == (0, 18, 10)
    assert int(client.get("devices:version")) > version_before, "the worker is told to reload"

    same = run_seed(database_url, redis_url, SEED_SIMULATOR_HOST="127.0.0.1", SEED_SIMULATOR_BASE_PORT="31000",
                    SEED_INTERVAL_S="10", SEED_DEVICES="10", SEED_TCP_DEVICES="5", SEED_FAILING="3")
    assert (last_log(same)["devices_created"], last_log(same)["devices_updated"],
            last_log(same)["devices_deleted"]) == (0, 0, 0)
    client.close()
