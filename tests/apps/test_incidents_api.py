"""Incidents over the tenant API (issue 14): filters (open, resolved, device, kind), one incident with
its timeline (opened, notifications sent with their result, acknowledged by whom, notes, resolved),
acknowledging and notes with their actor, and the children a parent's incident suppresses. Incidents are
written as the worker writes them (its SQL), so the API is tested against real rows."""

from __future__ import annotations

import json

from test_tracker_api import assert_error, db_query, http_device, new_tenant

from iot.worker import store


def _open(tracker, device_id: int, kind: str, at: float, summary: str) -> int:
    """Open an incident with the worker's statement (it writes the `opened` event too)."""
    db_query(tracker, "SELECT 1")  # the database is reachable
    _run(tracker, store.OPEN_INCIDENTS, [device_id], [kind], [summary], ["{}"], [None], [at], [""], [None])
    return db_query(tracker, "SELECT id FROM incidents WHERE device_id = $1 AND resolved_at IS NULL",
                    device_id)[0]["id"]


def _resolve(tracker, device_id: int, at: float) -> None:
    _run(tracker, store.RESOLVE_INCIDENTS, [device_id], [at], [None], ["up"])


def _run(tracker, sql: str, *args) -> None:
    import asyncio

    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(tracker.database_url)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    asyncio.run(go())


def _tenant_of(tracker, device_id: int) -> int:
    return db_query(tracker, "SELECT tenant_id FROM devices WHERE id = $1", device_id)[0]["tenant_id"]


def test_filters_by_status_kind_and_device(tracker) -> None:
    with new_tenant(tracker) as client:
        a, b = (client.post("/v1/devices", json=http_device(n)).json()["id"] for n in ("pump-a", "pump-b"))
        old = _open(tracker, a, "degraded", 1_800_000_000, "pump-a is slow")
        _resolve(tracker, a, 1_800_000_100)
        down = _open(tracker, a, "down", 1_800_000_200, "pump-a is down")
        other = _open(tracker, b, "down", 1_800_000_300, "pump-b is down")

        def ids(**params) -> list[int]:
            response = client.get("/v1/incidents", params=params)
            assert response.status_code == 200, response.text
            return [i["id"] for i in response.json()["items"]]

        assert ids() == [other, down, old]
        assert ids(status="open") == ids(open="true") == [other, down]
        assert ids(status="resolved") == [old]
        assert ids(kind="down") == [other, down] and ids(kind="degraded") == [old]
        assert ids(device_id=a, status="open") == [down]
        assert ids(device_id=a, kind="silent") == []
        assert ids(limit=1, before=other) == [down]
        assert_error(client.get("/v1/incidents", params={"kind": "on-fire"}), 422, "kind")
        assert_error(client.get("/v1/incidents", params={"status": "closed"}), 422, "status")
        assert_error(client.get("/v1/incidents", params={"status": "resolved", "open": "true"}), 422, "status",
                     "contradicts")


def test_timeline_shows_opened_notifications_ack_notes_and_resolved(tracker) -> None:
    with new_tenant(tracker) as client:
        device = client.post("/v1/devices", json=http_device("gate")).json()["id"]
        incident = _open(tracker, device, "down", _now(tracker), "gate is down: failing from ashburn")
        tenant = _tenant_of(tracker, device)
        # the down notification as the worker queues it, delivered after one failure
        payload = json.dumps({"device": {"id": device, "name": "gate"}, "state": "down"})
        db_query(tracker, "INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, payload, status, "
                          "attempts, last_status_code, delivered_at) VALUES ($1, $2, 'device.state_changed', "
                          "$3::jsonb, 'delivered', 2, 204, now())", tenant, f"e-{device}", payload)

        acked = client.post(f"/v1/incidents/{incident}/ack", json={"actor": "alice@example.com"})
        assert acked.status_code == 200, acked.text
        assert acked.json()["acknowledged_by"] == "alice@example.com" and acked.json()["acknowledged_at"]
        again = client.post(f"/v1/incidents/{incident}/ack", json={"actor": "bob"})
        assert_error(again, 409, "incident", "already acknowledged by alice@example.com")

        note = client.post(f"/v1/incidents/{incident}/notes", json={"actor": "bob", "text": "Breaker reset.\nWatching."})
        assert note.status_code == 201, note.text
        assert note.json()["kind"] == "note" and note.json()["text"] == "Breaker reset.\nWatching."
        _resolve(tracker, device, _now(tracker))
        assert_error(client.post(f"/v1/incidents/{incident}/ack", json={}), 409, "incident", "resolved already")
        # a note after the resolution is still welcome
        assert client.post(f"/v1/incidents/{incident}/notes", json={"text": "Root cause: storm"}).status_code == 201

        detail = client.get(f"/v1/incidents/{incident}").json()
    timeline = [(e["kind"], e["actor"], e["text"], e["result"]) for e in detail["timeline"]]
    assert timeline == [
        ("opened", "system", "gate is down: failing from ashburn", None),
        ("notified", "system", "webhook device.state_changed (down)", "delivered (HTTP 204)"),
        ("acknowledged", "alice@example.com", "", None),
        ("note", "bob", "Breaker reset.\nWatching.", None),
        ("resolved", "system", "recovered: the device is up", None),
        ("note", "api", "Root cause: storm", None),
    ]
    assert detail["resolved_at"] is not None and detail["suppressed_children"] == []


def test_bad_actor_and_note_are_refused_with_the_field(tracker) -> None:
    with new_tenant(tracker) as client:
        device = client.post("/v1/devices", json=http_device("x")).json()["id"]
        incident = _open(tracker, device, "down", _now(tracker), "x is down")
        assert_error(client.post(f"/v1/incidents/{incident}/notes", json={"text": ""}), 422, "text")
        assert_error(client.post(f"/v1/incidents/{incident}/notes", json={"text": "a\x07b"}), 422, "text",
                     "control characters")
        assert_error(client.post(f"/v1/incidents/{incident}/notes", json={"text": "x" * 2001}), 422, "text")
        assert_error(client.post(f"/v1/incidents/{incident}/ack", json={"actor": "  "}), 422, "actor",
                     "send who you are")
        assert_error(client.post(f"/v1/incidents/{incident}/ack", json={"actor": "a\nb"}), 422, "actor")
        assert client.get(f"/v1/incidents/{incident}").json()["acknowledged_by"] is None


def test_a_parents_incident_lists_the_children_it_suppresses(tracker) -> None:
    with new_tenant(tracker) as client:
        gateway = client.post("/v1/devices", json=http_device("gw")).json()["id"]
        kids = [client.post("/v1/devices", json=http_device(f"kid-{i}", parent_id=gateway)).json()["id"]
                for i in (1, 2)]
        db_query(tracker, "UPDATE devices SET state = 'down' WHERE id = ANY($1::bigint[])", [gateway, *kids])
        incident = _open(tracker, gateway, "down", _now(tracker), "gw is down")
        detail = client.get(f"/v1/incidents/{incident}").json()
    assert [(c["id"], c["name"], c["state"]) for c in detail["suppressed_children"]] == [
        (kids[0], "kid-1", "down"), (kids[1], "kid-2", "down")]


def test_another_tenants_incidents_are_out_of_reach(tracker) -> None:
    with new_tenant(tracker) as owner, new_tenant(tracker) as other:
        device = owner.post("/v1/devices", json=http_device("private")).json()["id"]
        incident = _open(tracker, device, "down", _now(tracker), "private is down")
        assert other.get(f"/v1/incidents/{incident}").status_code == 404
        assert other.post(f"/v1/incidents/{incident}/ack", json={"actor": "mallory"}).status_code == 404
        assert other.post(f"/v1/incidents/{incident}/notes", json={"text": "hi"}).status_code == 404
        assert other.get("/v1/incidents", params={"device_id": device}).json()["items"] == []
        detail = owner.get(f"/v1/incidents/{incident}").json()
    assert detail["acknowledged_by"] is None and [e["kind"] for e in detail["timeline"]] == ["opened"]


def test_openapi_documents_the_incident_and_maintenance_endpoints(tracker) -> None:
    with tracker.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/incidents/{incident_id}"]) == {"get"}
    assert set(paths["/v1/incidents/{incident_id}/ack"]) == {"post"}
    assert set(paths["/v1/incidents/{incident_id}/notes"]) == {"post"}
    assert set(paths["/v1/maintenance"]) == {"get", "post"}
    assert set(paths["/v1/maintenance/{window_id}"]) == {"get", "put", "delete"}
    for path in ("/v1/incidents/{incident_id}", "/v1/maintenance"):
        for operation in paths[path].values():
            assert operation["summary"] and operation["description"]


def _now(tracker) -> float:
    return float(db_query(tracker, "SELECT extract(epoch FROM now())::float8 AS t")[0]["t"])
