"""Small stand-ins for the Hetzner Cloud and Linode APIs, served on loopback for the window tests.

Only what `deploy/window.py` calls, with the behaviour that matters to it: Hetzner label selectors
match servers dynamically, a firewall still applied to resources cannot be deleted
(`resource_in_use`), names are unique; Linode `PUT .../rules` replaces every rule. Both record each
request so tests can check what was sent (and that tokens went only into the Authorization header).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeHetzner:
    servers: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "labels"}
    firewalls: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(7001))

    def matches(self, selector: str, labels: dict[str, str]) -> bool:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        return all(labels.get(k) == v for k, v in wanted.items())

    def applied_servers(self, firewall: dict[str, Any]) -> list[int]:
        ids = []
        for entry in firewall["applied_to"]:
            if entry["type"] == "label_selector":
                ids += [s["id"] for s in self.servers if self.matches(entry["label_selector"]["selector"], s["labels"])]
            elif entry["type"] == "server":
                ids.append(entry["server"]["id"])
        return ids

    def admitted(self, server_id: int) -> set[tuple[str, str, str]]:
        """(protocol, port, source) every firewall applied to the server admits inbound."""
        found = set()
        for firewall in self.firewalls.values():
            if server_id in self.applied_servers(firewall):
                for rule in firewall["rules"]:
                    if rule["direction"] == "in":
                        found |= {(rule["protocol"], rule["port"], src) for src in rule.get("source_ips", [])}
        return found

    def _firewall_json(self, firewall: dict[str, Any]) -> dict[str, Any]:
        applied = []
        for entry in firewall["applied_to"]:
            shown = dict(entry)
            if entry["type"] == "label_selector":
                shown["applied_to_resources"] = [
                    {"type": "server", "server": {"id": sid}} for sid in self.applied_servers({"applied_to": [entry]})
                ]
            applied.append(shown)
        # The real API spells out every rule field, empty or not.
        rules = [{"source_ips": [], "destination_ips": [], "description": None, "port": None, **rule}
                 for rule in firewall["rules"]]
        return {**firewall, "rules": rules, "applied_to": applied}

    def _action(self, command: str) -> dict[str, Any]:
        return {"id": next(self._ids), "command": command, "status": "success", "progress": 100,
                "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:00:01+00:00",
                "resources": [], "error": None}

    def handle(self, req: Request) -> tuple[int, Any]:
        if req.headers.get("authorization") != "Bearer hetzner-test-token":
            return 401, {"error": {"code": "unauthorized", "message": "unable to authenticate"}}
        meta = {"pagination": {"page": 1, "per_page": 50, "previous_page": None, "next_page": None,
                               "last_page": 1, "total_entries": 0}}
        if req.method == "GET" and req.path == "/v1/firewalls":
            found = list(self.firewalls.values())
            if "name" in req.query:
                found = [f for f in found if f["name"] == req.query["name"][0]]
            if "label_selector" in req.query:
                found = [f for f in found if self.matches(req.query["label_selector"][0], f["labels"])]
            meta["pagination"]["total_entries"] = len(found)
            return 200, {"firewalls": [self._firewall_json(f) for f in found], "meta": meta}
        if req.method == "POST" and req.path == "/v1/firewalls":
            body = req.body
            if any(f["name"] == body["name"] for f in self.firewalls.values()):
                return 409, {"error": {"code": "uniqueness_error", "message": "name is already used"}}
            firewall = {"id": next(self._ids), "name": body["name"], "labels": body.get("labels") or {},
                        "created": "2026-01-01T00:00:00+00:00", "rules": body.get("rules") or [],
                        "applied_to": body.get("apply_to") or []}
            self.firewalls[firewall["id"]] = firewall
            return 201, {"firewall": self._firewall_json(firewall), "actions": [self._action("apply_firewall")]}
        match = re.fullmatch(r"/v1/firewalls/(\d+)/actions/remove_from_resources", req.path)
        if req.method == "POST" and match:
            firewall = self.firewalls.get(int(match.group(1)))
            if firewall is None:
                return 404, {"error": {"code": "not_found", "message": "firewall not found"}}
            remove = req.body["remove_from"]
            firewall["applied_to"] = [e for e in firewall["applied_to"] if e not in remove]
            return 201, {"actions": [self._action("remove_firewall")]}
        match = re.fullmatch(r"/v1/firewalls/(\d+)", req.path)
        if req.method == "DELETE" and match:
            firewall = self.firewalls.get(int(match.group(1)))
            if firewall is None:
                return 404, {"error": {"code": "not_found", "message": "firewall not found"}}
            if firewall["applied_to"]:
                return 422, {"error": {"code": "resource_in_use", "message": "firewall is still applied"}}
            del self.firewalls[firewall["id"]]
            return 204, None
        match = re.fullmatch(r"/v1/actions/(\d+)", req.path)
        if req.method == "GET" and match:
            return 200, {"action": {**self._action("any"), "id": int(match.group(1))}}
        return 404, {"error": {"code": "not_found", "message": f"fake has no {req.method} {req.path}"}}


@dataclass
class FakeLinode:
    firewalls: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> {"id", "label", "rules"}
    requests: list[Request] = field(default_factory=list)

    def handle(self, req: Request) -> tuple[int, Any]:
        if req.headers.get("authorization") != "Bearer linode-test-token":
            return 401, {"errors": [{"reason": "Invalid Token"}]}
        if req.method == "GET" and req.path == "/v4/networking/firewalls":
            wanted = json.loads(req.headers.get("x-filter") or "{}")
            found = [f for f in self.firewalls.values() if all(f.get(k) == v for k, v in wanted.items())]
            data = [self._firewall_json(f) for f in found]
            return 200, {"data": data, "page": 1, "pages": 1, "results": len(data)}
        match = re.fullmatch(r"/v4/networking/firewalls/(\d+)(/rules)?", req.path)
        if match:
            firewall = self.firewalls.get(int(match.group(1)))
            if firewall is None:
                return 404, {"errors": [{"reason": "Not found"}]}
            if req.method == "GET" and match.group(2):
                return 200, firewall["rules"]
            if req.method == "GET":
                return 200, self._firewall_json(firewall)
            if req.method == "PUT" and match.group(2):
                firewall["rules"] = {k: req.body[k] for k in ("inbound", "inbound_policy", "outbound", "outbound_policy")
                                     if k in req.body}
                return 200, firewall["rules"]
        return 404, {"errors": [{"reason": f"fake has no {req.method} {req.path}"}]}

    def _firewall_json(self, firewall: dict[str, Any]) -> dict[str, Any]:
        return {"id": firewall["id"], "label": firewall["label"], "status": "enabled", "tags": [],
                "created": "2026-01-01T00:00:00", "updated": "2026-01-01T00:00:00", "rules": firewall["rules"]}


@contextmanager
def serve(api: FakeHetzner | FakeLinode) -> Iterator[str]:
    """Serve `api` on a free loopback port; yields the base URL (http://127.0.0.1:<port>)."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            req = Request(self.command, url.path, parse_qs(url.query),
                          {k.lower(): v for k, v in self.headers.items()}, json.loads(raw) if raw else None)
            with lock:
                api.requests.append(req)
                status, body = api.handle(req)
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    lock = threading.Lock()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
