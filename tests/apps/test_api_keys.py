"""API keys and scopes against a real `iot tracker` process: a read-only key gets 403 on every write route
(the list generated from the app's routes), named and scoped keys, revocation, rotation, the audit log, tenant
isolation, and migration 0014 turning each tenant's key into its first API key."""

from __future__ import annotations

import itertools
import re

import asyncpg
import httpx
from fastapi.routing import iter_route_contexts
from iot_processes import Tracker

from iot.db.migrate import available_migrations, migrate
from iot.settings import TrackerSettings
from iot.tokens import token_hash
from iot.tracker.app import create_app
from iot.tracker.auth import READ_METHODS, current_device, current_principal, route_authenticator

_slugs = itertools.count()


def new_tenant(tracker: Tracker) -> str:
    return tracker.create_tenant(f"k{next(_slugs)}-keys")


def make_key(tracker: Tracker, owner_key: str, name: str, scopes: list[str]) -> dict:
    with tracker.client(owner_key) as c:
        response = c.post("/v1/api-keys", json={"name": name, "scopes": scopes})
    assert response.status_code == 201, response.text
    return response.json()


def tenant_key_routes(authenticator: object = current_principal) -> list[tuple[str, str]]:
    """(method, path) of every route that authenticates with `authenticator` (by default a tenant API key),
    from the app itself."""
    app = create_app(TrackerSettings(database_url="postgresql://unused/x", redis_url="redis://unused"))
    found = []
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context.original_route, "dependant", None)
        if dependant is None or route_authenticator(dependant) is not authenticator:
            continue
        for method in sorted(context.methods or ()):
            found.append((method, context.path))
    return found


def test_a_read_only_key_gets_403_on_every_write_route_and_can_still_read(tracker: Tracker) -> None:
    owner = new_tenant(tracker)
    reader = make_key(tracker, owner, "grafana", ["read"])["key"]
    routes = tenant_key_routes()
    writes = [(m, p) for m, p in routes if m not in READ_METHODS]
    # The list is the app's, not ours: it covers every resource of the API (and any added later).
    assert {p for _, p in writes} >= {"/v1/devices", "/v1/devices/{device_id}", "/v1/channels", "/v1/maintenance",
                                       "/v1/api-keys", "/v1/api-keys/{key_id}", "/v1/webhook", "/v1/devices/bulk",
                                       "/v1/metric-rules", "/v1/incidents/{incident_id}/ack"}
    with tracker.client(reader) as c:
        for method, path in writes:
            url = re.sub(r"\{[^}]+\}", "1", path)
            response = c.request(method, url, json={})
            assert response.status_code == 403, (method, path, response.text)
            assert "'write' scope" in response.json()["detail"], (method, path)
        assert c.get("/v1/devices").status_code == 200
        assert c.get("/v1/tenant").status_code == 200
    with tracker.client(owner) as c:  # nothing was changed by the refused calls
        assert c.get("/v1/devices").json()["items"] == []
        assert [k["name"] for k in c.get("/v1/api-keys").json()["items"]] == ["grafana", "original key"]
        assert c.get("/v1/audit-log").json()["items"][0]["action"] == "POST /v1/api-keys"


def test_ingest_is_its_own_scope_on_every_route(tracker: Tracker) -> None:
    """`ingest` implies neither `read` nor `write`, and neither of them implies `ingest` (route lists generated)."""
    owner = new_tenant(tracker)
    ingest_only = make_key(tracker, owner, "gateway", ["ingest"])["key"]
    read_write = make_key(tracker, owner, "backend", ["read", "write"])["key"]
    with tracker.client(owner) as c:
        device = c.post("/v1/devices", json={"name": "relayed", "kind": "push"}).json()["id"]
    with tracker.client(ingest_only) as c:
        for method, path in tenant_key_routes():
            url = re.sub(r"\{[^}]+\}", str(device), path)
            response = c.request(method, url, json={})
            scope = "read" if method in READ_METHODS else "write"
            assert response.status_code == 403, (method, path, response.text)
            assert f"'{scope}' scope" in response.json()["detail"], (method, path)
    pushes = tenant_key_routes(current_device)
    assert {p for _, p in pushes} == {"/v1/metrics", "/v1/heartbeat"}
    with tracker.client(read_write) as c:
        for method, path in pushes:
            response = c.request(method, path, json={"name": "t", "value": 1}, headers={"X-Device-Id": str(device)})
            assert response.status_code == 403 and "'ingest' scope" in response.json()["detail"], (method, path)
    with tracker.client(ingest_only) as c:
        for method, path in pushes:
            response = c.request(method, path, json={"name": "t", "value": 1}, headers={"X-Device-Id": str(device)})
            assert response.status_code == 200, (method, path, response.text)
    with tracker.client(owner) as c:  # the refused calls changed nothing; the pushes are not audited
        assert [d["name"] for d in c.get("/v1/devices").json()["items"]] == ["relayed"]
        assert [k["name"] for k in c.get("/v1/api-keys").json()["items"]] == ["backend", "gateway", "original key"]
        assert c.get("/v1/audit-log").json()["items"][0]["action"] == "POST /v1/devices"


def test_a_write_only_key_cannot_read_and_keys_cannot_widen_their_scopes(tracker: Tracker) -> None:
    owner = new_tenant(tracker)
    writer = make_key(tracker, owner, "deploy", ["write"])
    assert writer["scopes"] == ["write"] and writer["key"].startswith(writer["prefix"].rstrip("…"))
    with tracker.client(writer["key"]) as c:
        created = c.post("/v1/devices", json={"name": "d1", "kind": "push"})
        assert created.status_code == 201, created.text
        denied = c.get("/v1/devices")
        assert denied.status_code == 403 and "'read' scope" in denied.json()["detail"]
        wider = c.post("/v1/api-keys", json={"name": "escalate", "scopes": ["read", "write"]})
        assert wider.status_code == 403 and "read" in wider.json()["detail"]
        assert c.post("/v1/api-keys", json={"name": "narrow", "scopes": ["write"]}).status_code == 201
    with tracker.client(owner) as c:
        bad = c.post("/v1/api-keys", json={"name": "x", "scopes": ["admin"]})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "scopes[0]"
        empty = c.post("/v1/api-keys", json={"name": "x", "scopes": []})
        assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "scopes"
        listed = c.get("/v1/api-keys").json()["items"]
        assert all("key" not in k for k in listed)  # shown once, never listed
        assert [d["name"] for d in c.get("/v1/devices").json()["items"]] == ["d1"]


def test_a_narrow_key_cannot_rotate_or_revoke_a_wider_one(tracker: Tracker) -> None:
    """Rotating answers the new secret: a write-only key rotating the original key would hold read and ingest."""
    owner = new_tenant(tracker)
    writer = make_key(tracker, owner, "deploy", ["write"])
    peer = make_key(tracker, owner, "deploy-2", ["write"])
    with tracker.client(owner) as c:
        original = next(k for k in c.get("/v1/api-keys").json()["items"] if k["name"] == "original key")
    with tracker.client(writer["key"]) as c:
        for response in (c.post(f"/v1/api-keys/{original['id']}/rotate"), c.delete(f"/v1/api-keys/{original['id']}")):
            assert response.status_code == 403, response.text
            assert "read" in response.json()["detail"] and "ingest" in response.json()["detail"], response.text
            assert "key" not in response.json()
        assert c.post(f"/v1/api-keys/{peer['id']}/rotate").status_code == 200  # same scopes: allowed
    with tracker.client(owner) as c:  # the original key still works, with its old secret
        assert c.get(f"/v1/api-keys/{original['id']}").json()["revoked_at"] is None


def test_revoked_keys_stop_at_once_and_rotation_replaces_the_secret(tracker: Tracker) -> None:
    owner = new_tenant(tracker)
    ci = make_key(tracker, owner, "ci", ["read", "write"])
    with tracker.client(ci["key"]) as c:
        assert c.get("/v1/devices").status_code == 200
    with tracker.client(owner) as c:
        rotated = c.post(f"/v1/api-keys/{ci['id']}/rotate")
        assert rotated.status_code == 200 and rotated.json()["name"] == "ci"
        new_secret = rotated.json()["key"]
    with tracker.client(ci["key"]) as c:
        assert c.get("/v1/devices").status_code == 401
    with tracker.client(new_secret) as c:
        assert c.get("/v1/devices").status_code == 200
        assert c.get(f"/v1/api-keys/{ci['id']}").json()["last_used_at"] is not None
    with tracker.client(owner) as c:
        revoked = c.delete(f"/v1/api-keys/{ci['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    with tracker.client(new_secret) as c:
        gone = c.get("/v1/devices")
        assert gone.status_code == 401 and "revoked" in gone.json()["detail"]
    # The original key rotated through the old endpoint keeps its name and scopes.
    with tracker.client(owner) as c:
        replaced = c.post("/v1/tenant/api-key").json()["api_key"]
    with tracker.client(owner) as c:
        assert c.get("/v1/devices").status_code == 401
    with tracker.client(replaced) as c:
        keys = {k["name"]: k for k in c.get("/v1/api-keys").json()["items"]}
        assert keys["original key"]["scopes"] == ["read", "write", "ingest"] and keys["original key"]["revoked_at"] is None


def test_keys_and_audit_log_are_per_tenant(tracker: Tracker) -> None:
    acme, beta = new_tenant(tracker), new_tenant(tracker)
    acme_key = make_key(tracker, acme, "acme-ci", ["read"])
    with tracker.client(beta) as c:
        assert c.get(f"/v1/api-keys/{acme_key['id']}").status_code == 404
        assert c.delete(f"/v1/api-keys/{acme_key['id']}").status_code == 404
        assert c.post(f"/v1/api-keys/{acme_key['id']}/rotate").status_code == 404
        assert [k["name"] for k in c.get("/v1/api-keys").json()["items"]] == ["original key"]
        assert c.get("/v1/audit-log").json()["items"] == []
    with tracker.client(acme_key["key"]) as c:
        assert c.get("/v1/api-keys").json()["items"][0]["revoked_at"] is None


def test_every_change_is_in_the_audit_log_with_key_name_and_proxy_reported_address(tracker: Tracker) -> None:
    owner = new_tenant(tracker)
    deploy = make_key(tracker, owner, "deploy script", ["read", "write"])
    with tracker.client(deploy["key"]) as c:
        device = c.post("/v1/devices", json={"name": "pump", "kind": "push"},
                        headers={"X-Forwarded-For": "203.0.113.9"}).json()
        assert c.delete(f"/v1/devices/{device['id']}").status_code == 204
        assert c.delete("/v1/devices/999999").status_code == 404  # refused: nothing changed, no entry
        c.get("/v1/devices")  # reads are not changes
        page = c.get("/v1/audit-log", params={"limit": 2}).json()
        entries = page["items"]
        assert [(e["actor_name"], e["action"], e["target"]) for e in entries] == [
            ("deploy script", "DELETE /v1/devices/{device_id}", f"device_id={device['id']}"),
            ("deploy script", "POST /v1/devices", ""),
        ]
        assert entries[0]["ip"] == "127.0.0.1" and entries[1]["ip"] == "203.0.113.9"
        assert entries[0]["actor_kind"] == "api_key" and entries[0]["actor_id"] == deploy["id"]
        older = c.get("/v1/audit-log", params={"before": page["next_before"]}).json()["items"]
        assert [(e["actor_name"], e["action"]) for e in older] == [("original key", "POST /v1/api-keys")]
        assert c.get("/v1/audit-log", params={"limit": 0}).status_code == 422


async def test_0014_turns_each_tenant_key_into_its_first_api_key(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        for version, sql in available_migrations():
            if version >= "0014":
                break
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        old_key = "iotk_" + "x" * 43
        tenant = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('old', $1) RETURNING id",
                                     token_hash(old_key))
        assert "0014_accounts" in await migrate(database_url)
        rows = await conn.fetch("SELECT tenant_id, name, key_hash, scopes, revoked_at FROM api_keys")
        assert [tuple(r) for r in rows] == [(tenant, "original key", token_hash(old_key),
                                             ["read", "write", "ingest"], None)]
        from iot.repo.api_keys import principal_by_key
        principal = await principal_by_key(conn, old_key)
        assert principal is not None and principal.tenant.slug == "old"
        assert principal.scopes == {"read", "write", "ingest"}
    finally:
        await conn.close()


def test_an_unknown_key_is_401_not_403(tracker: Tracker) -> None:
    with httpx.Client(base_url=tracker.url, headers={"Authorization": "Bearer iotk_nope"}) as c:
        assert c.post("/v1/devices", json={}).status_code == 401
