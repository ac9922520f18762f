"""`iot simulate` as a real process: device behaviour, failure modes, source refusal, hit counters, push."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from iot_processes import Simulator, Tracker, start_simulator


def get(sim: Simulator, index: int, source: str = "127.0.0.1", timeout: float = 5.0) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=timeout) as client:
        return client.get(f"http://127.0.0.1:{sim.base_port + index}/health")


def tcp_probe(sim: Simulator, index: int, source: str = "127.0.0.1", timeout: float = 1.0) -> str:
    """'ok' + banner, 'refused' or 'timeout' (as a connect-only monitor would see it)."""
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        try:
            s.connect(("127.0.0.1", sim.base_port + index))
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        return "ok " + s.recv(16).decode().strip()


def wait_for(condition, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s")


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory) -> Iterator[Simulator]:
    sim = start_simulator(tmp_path_factory.mktemp("sim"), devices=4, tcp_devices=2)
    yield sim
    sim.process.stop()


@pytest.fixture
def sim(shared_sim: Simulator) -> Simulator:
    """The module's simulator, every device back to ok with zeroed counters."""
    with shared_sim.control() as control:
        assert control.post("/reset", json={"hits": True}).status_code == 200
    return shared_sim


def test_http_devices_answer_ok_and_count_every_request(sim: Simulator) -> None:
    response = get(sim, 0)
    assert response.status_code == 200 and response.text == "ok"
    with httpx.Client(timeout=5) as keep_alive:  # three requests on one connection
        for _ in range(3):
            assert keep_alive.get(f"http://127.0.0.1:{sim.base_port + 1}/").text == "ok"
    with sim.control() as control:
        assert control.get("/devices/0/hits").json() == {"index": 0, "hits": 1, "by_source": {"127.0.0.1": 1}}
        assert control.get("/hits").json()["hits"] == [1, 3, 0, 0, 0, 0]
        devices = control.get("/devices").json()
        assert [d["kind"] for d in devices] == ["http"] * 4 + ["tcp"] * 2
        assert devices[5]["target"] == f"127.0.0.1:{sim.base_port + 5}"
        assert control.post("/hits/reset").status_code == 200
        assert control.get("/hits").json()["total"] == 0


def test_http_fail_hang_slow_and_reset(sim: Simulator) -> None:
    with sim.control() as control:
        assert control.post("/devices/0", json={"mode": "fail"}).json()["mode"] == "fail"
        assert control.post("/devices/1", json={"mode": "hang"}).status_code == 200
        assert control.post("/devices/2", json={"delay_ms": 400}).json()["delay_ms"] == 400

        assert get(sim, 0).status_code == 500
        with pytest.raises(httpx.ReadTimeout):
            get(sim, 1, timeout=0.5)
        started = time.monotonic()
        assert get(sim, 2).status_code == 200
        assert time.monotonic() - started >= 0.4  # never answered before the delay
        assert control.get("/hits").json()["hits"][:3] == [1, 1, 1]

        assert control.post("/reset").status_code == 200
        assert [get(sim, i).status_code for i in range(3)] == [200, 200, 200]
        assert control.get("/hits").json()["hits"][:3] == [2, 2, 2]  # reset keeps counters unless asked
        control.post("/reset", json={"hits": True})
        assert control.get("/hits").json()["total"] == 0


def test_http_refuses_only_the_given_source(sim: Simulator) -> None:
    with sim.control() as control:
        changed = control.post("/devices", json={"devices": "all", "refuse_sources": ["127.0.0.3"]})
        assert changed.json() == {"changed": 6}
        refused = get(sim, 3, source="127.0.0.3")
        assert refused.status_code == 503 and refused.text == "refused"
        assert get(sim, 3, source="127.0.0.2").status_code == 200
        assert get(sim, 3, source="127.0.0.1").status_code == 200
        hits = control.get("/devices/3/hits").json()
        assert hits["by_source"] == {"127.0.0.3": 1, "127.0.0.2": 1, "127.0.0.1": 1}
        assert control.get("/hits").json()["by_source"] == {"127.0.0.3": 1, "127.0.0.2": 1, "127.0.0.1": 1}


def test_tcp_devices_fail_hang_refuse_source_and_recover(sim: Simulator) -> None:
    tcp = 4  # first TCP device index
    assert tcp_probe(sim, tcp) == "ok ok"
    with sim.control() as control:
        control.post(f"/devices/{tcp}", json={"mode": "fail"})
        assert tcp_probe(sim, tcp) == "refused"
        control.post(f"/devices/{tcp}", json={"mode": "hang"})
        assert tcp_probe(sim, tcp, timeout=0.5) == "timeout"
        control.post(f"/devices/{tcp}", json={"mode": "ok", "refuse_sources": ["127.0.0.4", "127.0.0.5"]})
        assert tcp_probe(sim, tcp, source="127.0.0.4", timeout=0.5) == "timeout"
        assert tcp_probe(sim, tcp, source="127.0.0.5", timeout=0.5) == "timeout"
        assert tcp_probe(sim, tcp, source="127.0.0.6") == "ok ok"
        assert tcp_probe(sim, tcp + 1, source="127.0.0.4") == "ok ok"  # other devices unaffected
        control.post(f"/devices/{tcp}/reset")
        assert tcp_probe(sim, tcp, source="127.0.0.4") == "ok ok"
        hits = control.get(f"/devices/{tcp}/hits").json()
        # accepted connections only: first ok, the 127.0.0.6 one, and after reset
        assert hits["hits"] == 3 and hits["by_source"] == {"127.0.0.1": 1, "127.0.0.6": 1, "127.0.0.4": 1}


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/devices/0", {"mode": "broken"}, 400, "mode"),
        ("/devices/0", {"delay_ms": -5}, 400, "delay_ms"),
        ("/devices/0", {"refuse_sources": "127.0.0.3"}, 400, "refuse_sources"),
        ("/devices/0", {"speed": 3}, 400, "speed"),
        ("/devices", {"devices": [99], "mode": "fail"}, 400, "devices"),
        ("/devices/99", {"mode": "fail"}, 404, "index"),
        ("/push/x", {"token": "t"}, 409, "push"),
    ],
)
def test_control_api_bad_input(sim: Simulator, path: str, body: dict, status: int, field: str) -> None:
    with sim.control() as control:
        response = control.put(path, json=body) if path.startswith("/push") else control.post(path, json=body)
        assert response.status_code == status, response.text
        assert response.json()["detail"].startswith(f"{field}:")


def test_a_thousand_http_and_two_hundred_tcp_devices_in_one_process(simulator_factory) -> None:
    sim = simulator_factory(devices=1000, tcp_devices=200)
    for index in (0, 499, 999):
        assert get(sim, index).text == "ok"
    for index in (1000, 1199):
        assert tcp_probe(sim, index) == "ok ok"
    with sim.control() as control:
        control.post("/devices", json={"devices": {"from": 990, "to": 1000}, "mode": "fail"})
        assert get(sim, 995).status_code == 500 and get(sim, 989).status_code == 200
        hits = control.get("/hits").json()
        assert len(hits["hits"]) == 1200 and hits["total"] == 7


def test_push_devices_send_to_the_tracker_and_can_fall_silent(tracker: Tracker, simulator_factory) -> None:
    api_key = tracker.create_tenant("push-sim")
    with tracker.client(api_key) as tenant:
        created = tenant.post("/v1/devices", json=[{"name": "pusher", "kind": "push", "interval_s": 5},
                                                   {"name": "beater", "kind": "push", "interval_s": 5}]).json()
    pusher, beater = created["devices"]
    sim = simulator_factory(devices=1, push_url=tracker.url)

    async def metric_count(device_id: int) -> int:
        conn = await asyncpg.connect(tracker.database_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM device_metrics WHERE device_id = $1", device_id)
        finally:
            await conn.close()

    with sim.control() as control:
        assert control.put("/push/pusher", json={"token": pusher["token"], "interval_s": 0.1, "metric": "temp"}).status_code == 200
        assert control.put("/push/beater", json={"token": beater["token"], "interval_s": 0.1, "metric": None}).status_code == 200
        wait_for(lambda: asyncio.run(metric_count(pusher["id"])) >= 3, what="pushed metrics in Postgres")
        wait_for(lambda: all(d["sent"] >= 3 for d in control.get("/push").json()), what="heartbeats sent")
        assert asyncio.run(metric_count(beater["id"])) == 0  # heartbeats carry no points

        assert control.post("/push/pusher", json={"silent": True}).json()["silent"] is True
        sent = control.get("/push").json()[0]["sent"]
        count = asyncio.run(metric_count(pusher["id"]))
        # Still silent after several intervals: nothing more was sent or stored.
        beater_sent = control.get("/push").json()[1]["sent"]
        wait_for(lambda: control.get("/push").json()[1]["sent"] >= beater_sent + 5, what="five more heartbeats")
        assert control.get("/push").json()[0]["sent"] == sent
        assert asyncio.run(metric_count(pusher["id"])) == count
        assert control.get("/push").json()[0]["failures"] == 0

        control.put("/push/bad", json={"token": "iotd_wrong", "interval_s": 0.1})
        wait_for(lambda: next(d for d in control.get("/push").json() if d["key"] == "bad")["last_status"] == 401,
                 what="401 for a wrong token")
        assert control.delete("/push/bad").status_code == 200
