"""Device tags (issue 15, "Organising a fleet"): set on create and update, shown, filtered on, counted per
tenant, bounded like every other input, never visible to another tenant; migration 0006 on old rows."""

from __future__ import annotations

import asyncpg
import pytest
from test_tracker_api import assert_error, http_device, new_tenant

from iot.db.migrate import available_migrations, migrate


def test_tags_on_create_are_normalised_and_shown(tracker) -> None:
    with new_tenant(tracker) as client:
        created = client.post("/v1/devices", json=http_device(
            "pump-1", tags=[" Env:Prod ", "site/berlin", "env:prod", "rack_3.a-b"])).json()
        detail = client.get(f"/v1/devices/{created['id']}").json()
        listed = client.get("/v1/devices").json()["items"]
    # trimmed, lower-cased, duplicates collapsed, first-seen order kept
    assert detail["tags"] == ["env:prod", "site/berlin", "rack_3.a-b"]
    assert listed[0]["tags"] == detail["tags"]


def test_bulk_create_update_replace_and_filter(tracker) -> None:
    with new_tenant(tracker) as client:
        made = client.post("/v1/devices", json={"devices": [
            http_device("a", tags=["env:prod", "site/berlin"]),
            http_device("b", tags=["env:prod", "site/paris"]),
            http_device("c", tags=["env:dev", "site/berlin"]),
            http_device("d"),
        ]}).json()["devices"]
        ids = {d["name"]: d["id"] for d in made}

        def names(*tags: str) -> list[str]:
            page = client.get("/v1/devices", params=[("tag", t) for t in tags] + [("sort", "name")]).json()
            assert page["total"] == len(page["items"])
            return [d["name"] for d in page["items"]]

        assert names("env:prod") == ["a", "b"]
        assert names("env:prod", "site/berlin") == ["a"]
        assert names("ENV:PROD ") == ["a", "b"]  # the filter is normalised like the tags
        assert names("nope") == []
        assert client.get(f"/v1/devices/{ids['d']}").json()["tags"] == []

        patched = client.patch(f"/v1/devices/{ids['a']}", json={"tags": ["env:dev"]})
        assert patched.status_code == 200, patched.text
        assert patched.json()["tags"] == ["env:dev"]  # replaced, not merged
        assert names("env:prod") == ["b"]
        assert names("env:dev") == ["a", "c"]
        # a patch that leaves tags out keeps them
        client.patch(f"/v1/devices/{ids['a']}", json={"interval_s": 120})
        assert client.get(f"/v1/devices/{ids['a']}").json()["tags"] == ["env:dev"]

        counts = client.get("/v1/tags").json()
        assert client.get("/v1/tags", params={"limit": 2}).json() == counts[:2]
        refused = client.get("/v1/tags", params={"limit": 0})
        assert refused.status_code == 422 and "limit" in refused.text
    # the most used first, then by name; "a" lost env:prod and site/berlin with the patch
    assert counts == [{"tag": "env:dev", "devices": 2}, {"tag": "env:prod", "devices": 1},
                      {"tag": "site/berlin", "devices": 1}, {"tag": "site/paris", "devices": 1}]


@pytest.mark.parametrize(("tags", "field", "reason"), [
    ([f"t{i}" for i in range(21)], "tags", "at most 20"),
    (["x" * 51], "tags[0]", "1-50 characters"),
    (["ok", "   "], "tags[1]", "1-50 characters"),
    (["ok", "has space"], "tags[1]", "letters, digits"),
    (["bad;tag"], "tags[0]", "letters, digits"),
    (["nul\x00"], "tags[0]", "control characters"),
    (["ünïcode"], "tags[0]", "letters, digits"),
])
def test_bad_tags_are_refused_naming_the_field(tracker, tags, field, reason) -> None:
    with new_tenant(tracker) as client:
        assert_error(client.post("/v1/devices", json=http_device("x", tags=tags)), 422, field, reason)
        assert_error(client.post("/v1/devices", json=[http_device("x", tags=tags)]), 422,
                     f"devices[0].{field}", reason)
        made = client.post("/v1/devices", json=http_device("y")).json()
        assert_error(client.patch(f"/v1/devices/{made['id']}", json={"tags": tags}), 422, field, reason)
        if len(tags) == 1:  # the list filter takes the same tags
            assert_error(client.get("/v1/devices", params={"tag": tags[0]}), 422, "tag[0]", reason)
        if len(tags) > 20:
            assert_error(client.get("/v1/devices", params={"tag": tags}), 422, "tag", reason)
        assert client.get("/v1/devices").json()["total"] == 1  # nothing stored


def test_a_tenant_never_sees_another_tenants_tags(tracker) -> None:
    with new_tenant(tracker) as alice, new_tenant(tracker) as bob:
        alice.post("/v1/devices", json=http_device("secret", tags=["customer:megacorp"]))
        bob.post("/v1/devices", json=http_device("mine", tags=["env:prod"]))
        assert bob.get("/v1/tags").json() == [{"tag": "env:prod", "devices": 1}]
        assert bob.get("/v1/devices", params={"tag": "customer:megacorp"}).json() == {
            "items": [], "total": 0, "next_cursor": None}
        assert alice.get("/v1/tags").json() == [{"tag": "customer:megacorp", "devices": 1}]


async def test_0006_adds_empty_tags_to_existing_devices(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        for version, sql in available_migrations():
            if version >= "0006":
                break
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        tenant = await conn.fetchval("INSERT INTO tenants (slug, api_key_hash) VALUES ('old', 'h') RETURNING id")
        await conn.execute("INSERT INTO devices (tenant_id, name, kind, target) "
                           "VALUES ($1, 'old-device', 'http', 'http://192.0.2.1/')", tenant)
        assert "0006_device_tags" in await migrate(database_url)
        rows = await conn.fetch("SELECT name, tags FROM devices")
        # a new device written without tags also gets the empty list
        await conn.execute("INSERT INTO devices (tenant_id, name, kind) VALUES ($1, 'new', 'push')", tenant)
        new_tags = await conn.fetchval("SELECT tags FROM devices WHERE name = 'new'")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE devices SET tags = $1 WHERE name = 'new'", [f"t{i}" for i in range(21)])
    finally:
        await conn.close()
    assert [(r["name"], r["tags"]) for r in rows] == [("old-device", [])]
    assert new_tags == []
