"""The smoke checks of a deployed stack, one function each; deploy/smoke.py decides where they point.

Each check returns a `Check` (name, ok, detail) and never raises for what it is checking: a failed
check is a result, so one broken host does not hide the state of the others.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

# What each kind of public host must answer, so a host routed to the wrong app is caught.
TITLES = {"marketing": "my-iot-app: know when", "docs": "my-iot-app docs"}
TRACKER_TITLE = "my-iot-app tracker"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Endpoint:
    """How to reach one public hostname: through Cloudflare (base_url https://<hostname>), or in a dry
    run straight at a local process (base_url http://127.0.0.1:<port>, the hostname as Host header)."""

    hostname: str
    base_url: str

    def get(self, path: str, timeout: float = 15.0) -> httpx.Response:
        headers = {} if self.base_url.startswith(f"https://{self.hostname}") else {"Host": self.hostname}
        return httpx.get(self.base_url.rstrip("/") + path, headers=headers, timeout=timeout, follow_redirects=False)


@dataclass(frozen=True)
class NomadAccess:
    address: str
    token: str
    ca_file: str | None  # None: plain http (tests only)
    cert_file: str | None
    key_file: str | None
    expected_nodes: int


@dataclass
class DeviceProbe:
    tracker: Endpoint
    admin_token: str
    up_target: str  # answers 2xx/3xx
    down_target: str  # answers >= 400 (or nothing)
    interval_s: int = 10
    timeout_s: float = 600.0
    slug: str = field(default_factory=lambda: f"smoke-{secrets.token_hex(4)}")


def _guard(name: str, body: Callable[[], str]) -> Check:
    try:
        return Check(name, True, body())
    except (AssertionError, httpx.HTTPError, OSError, ValueError, KeyError) as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}" if not isinstance(exc, AssertionError) else str(exc))


def _edge_marked(response: httpx.Response, through_edge: bool) -> None:
    if through_edge:
        assert "cf-ray" in response.headers, "the answer did not come through Cloudflare (no cf-ray header)"


def host_serves(endpoint: Endpoint, kind: str, through_edge: bool) -> Check:
    """`kind`: marketing, docs, tracker, dashboard or monitor:<name>."""

    def body() -> str:
        if kind in TITLES:
            response = endpoint.get("/")
            assert response.status_code == 200, f"GET / answered {response.status_code}"
            title = re.search(r"<title>(.*?)</title>", response.text, re.S)
            assert title and TITLES[kind] in title.group(1), f"not the {kind} site (title {title and title.group(1)!r})"
        elif kind == "tracker":
            response = endpoint.get("/openapi.json")
            assert response.status_code == 200, f"GET /openapi.json answered {response.status_code}"
            assert response.json()["info"]["title"] == TRACKER_TITLE, "not the tracker"
            health = endpoint.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "ok", f"/health: {health.text[:200]}"
        elif kind == "dashboard":
            response = endpoint.get("/health")
            assert response.status_code == 200 and response.json().get("service") == "dashboard", "not the dashboard"
        elif kind.startswith("monitor:"):
            region = kind.split(":", 1)[1]
            response = endpoint.get("/health")
            assert response.status_code == 200, f"GET /health answered {response.status_code}"
            assert response.json().get("region") == region, f"not monitor {region}: {response.text[:200]}"
        else:
            raise ValueError(f"unknown host kind {kind!r}")
        _edge_marked(response, through_edge)
        return f"{kind} answers"

    return _guard(f"{endpoint.hostname} serves {kind}", body)


def path_not_served(endpoint: Endpoint, path: str, through_edge: bool) -> Check:
    """Internals (/metrics, the worker's /status) must not answer on a public route."""

    def body() -> str:
        response = endpoint.get(path)
        assert response.status_code != 200, f"{path} answered 200: it is public"
        assert not ("metrics" in path and "iot_monitor_" in response.text), "Prometheus text leaked"
        _edge_marked(response, through_edge)
        return f"answered {response.status_code}"

    return _guard(f"{endpoint.hostname}{path} is not public", body)


def port_closed(host: str, port: int, why: str, timeout: float = 5.0) -> Check:
    """A direct TCP connection must fail (refused or filtered)."""

    def body() -> str:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as exc:
            return f"no connection ({type(exc).__name__})"
        raise AssertionError(f"{host}:{port} accepted a connection")

    return _guard(f"{host}:{port} unreachable directly ({why})", body)


def nomad_alive(access: NomadAccess) -> Check:
    def body() -> str:
        kwargs: dict = {"headers": {"X-Nomad-Token": access.token}, "timeout": 15.0}
        if access.ca_file:
            kwargs["verify"] = access.ca_file
            kwargs["cert"] = (access.cert_file, access.key_file)
        with httpx.Client(base_url=access.address, **kwargs) as client:
            members = client.get("/v1/agent/members").raise_for_status().json()["Members"]
            nodes = client.get("/v1/nodes").raise_for_status().json()
        alive = [m["Name"] for m in members if m.get("Status") == "alive"]
        ready = [n["Name"] for n in nodes if n.get("Status") == "ready" and n.get("SchedulingEligibility") == "eligible"]
        assert len(alive) == access.expected_nodes == len(members), f"servers alive: {alive} of {len(members)}"
        assert len(ready) == access.expected_nodes == len(nodes), f"clients ready: {ready} of {len(nodes)}"
        return f"{len(alive)} servers alive, {len(ready)} clients ready"

    return _guard("Nomad servers and clients", body)


def device_goes_down_and_up(probe: DeviceProbe, say: Callable[[str], None] = print) -> Check:
    """A test device through the whole pipeline: registered UP, target broken -> DOWN, fixed -> UP."""

    def body() -> str:
        admin = {"Authorization": f"Bearer {probe.admin_token}"}
        created = _post(probe.tracker, "/v1/tenants", {"slug": probe.slug}, admin)
        key = {"Authorization": f"Bearer {created['api_key']}"}
        device = _post(probe.tracker, "/v1/devices", {
            "name": "smoke-device", "kind": "http", "target": probe.up_target, "interval_s": probe.interval_s,
            "timeout_ms": 3000}, key)
        timings = []
        for target, state in ((None, "up"), (probe.down_target, "down"), (probe.up_target, "up")):
            started = time.monotonic()
            if target is not None:
                _patch(probe.tracker, f"/v1/devices/{device['id']}", {"target": target}, key)
            _wait_state(probe, device["id"], state, key)
            timings.append(f"{state} after {time.monotonic() - started:.0f}s")
            say(f"smoke: device {device['id']} of tenant {probe.slug} is {state}")
        return ", ".join(timings)

    return _guard("a test device goes DOWN and UP", body)


def _client(endpoint: Endpoint, headers: dict[str, str]) -> httpx.Client:
    host = {} if endpoint.base_url.startswith(f"https://{endpoint.hostname}") else {"Host": endpoint.hostname}
    return httpx.Client(base_url=endpoint.base_url, headers={**headers, **host}, timeout=30.0)


def _post(endpoint: Endpoint, path: str, body: dict, headers: dict[str, str]) -> dict:
    with _client(endpoint, headers) as client:
        response = client.post(path, json=body)
    assert response.status_code == 201, f"POST {path} answered {response.status_code}: {response.text[:300]}"
    return response.json()


def _patch(endpoint: Endpoint, path: str, body: dict, headers: dict[str, str]) -> None:
    with _client(endpoint, headers) as client:
        response = client.patch(path, json=body)
    assert response.status_code == 200, f"PATCH {path} answered {response.status_code}: {response.text[:300]}"


def _wait_state(probe: DeviceProbe, device_id: int, state: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + probe.timeout_s
    seen = None
    with _client(probe.tracker, headers) as client:
        while time.monotonic() < deadline:
            response = client.get(f"/v1/devices/{device_id}")
            if response.status_code == 200:
                seen = response.json()["state"]
                if seen == state:
                    return
            time.sleep(1.0)
    raise AssertionError(f"device {device_id} did not become {state} within {probe.timeout_s:.0f}s (last: {seen})")
