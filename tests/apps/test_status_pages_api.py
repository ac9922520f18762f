"""Status pages over the tenant API (issue 14): create, list, replace, delete; bad input refused with the
field and the fix (slug, logo, devices of another tenant, tags, the component cap); another tenant's page
is a 404 like a missing one; OpenAPI lists the endpoints."""

from __future__ import annotations

import pytest
from test_tracker_api import assert_error, http_device, new_tenant


def _page(**extra) -> dict:
    return {"slug": "public", "title": "Acme status", **extra}


def test_a_page_is_created_listed_replaced_and_deleted(tracker) -> None:
    with new_tenant(tracker) as client:
        pump = client.post("/v1/devices", json=http_device("pump-1", tags=["site/berlin"])).json()
        made = client.post("/v1/status-pages", json=_page(
            slug="Public", device_ids=[pump["id"], pump["id"]], tags=["Site/Berlin"],
            logo_url="https://cdn.example.com/logo.png", custom_domain="Status.Example.com.", published=True))
        assert made.status_code == 201, made.text
        page = made.json()
        assert page["slug"] == "public" and page["device_ids"] == [pump["id"]] and page["tags"] == ["site/berlin"]
        assert page["custom_domain"] == "status.example.com" and page["published"] is True
        assert page["public_url"].startswith("https://") and page["public_url"].endswith(".localhost/status/public")

        assert [p["id"] for p in client.get("/v1/status-pages").json()["items"]] == [page["id"]]
        assert client.get(f"/v1/status-pages/{page['id']}").json()["title"] == "Acme status"
        taken = client.post("/v1/status-pages", json=_page())
        assert_error(taken, 409, "slug", "another of your status pages is at /status/public")

        replaced = client.put(f"/v1/status-pages/{page['id']}", json=_page(slug="ops", title="Ops", published=False))
        assert replaced.status_code == 200, replaced.text
        body = replaced.json()
        assert body["slug"] == "ops" and body["device_ids"] == [] and body["published"] is False
        assert body["logo_url"] is None and body["updated_at"] >= page["updated_at"]
        assert client.delete(f"/v1/status-pages/{page['id']}").status_code == 204
        assert client.get(f"/v1/status-pages/{page['id']}").status_code == 404
        assert client.delete(f"/v1/status-pages/{page['id']}").status_code == 404


def test_bad_pages_are_refused_with_the_field_and_a_fix(tracker) -> None:
    with new_tenant(tracker) as client, new_tenant(tracker) as other:
        mine = client.post("/v1/devices", json=http_device("mine", tags=["env:prod"])).json()
        theirs = other.post("/v1/devices", json=http_device("theirs", tags=["secret"])).json()
        post = lambda **body: client.post("/v1/status-pages", json=_page(**body))  # noqa: E731

        assert_error(post(slug="-bad"), 422, "slug", "lower-case letters, digits and hyphens")
        assert_error(post(slug="a b"), 422, "slug", "not starting or ending with a hyphen")
        assert_error(post(slug="x" * 64), 422, "slug")
        assert_error(post(title="  "), 422, "title", "at least 1 characters")
        assert_error(post(logo_url="http://example.com/logo.png"), 422, "logo_url", "must be an https:// address")
        assert_error(post(logo_url="javascript:alert(1)"), 422, "logo_url", "https://")
        assert_error(post(logo_url="https://user:pw@example.com/l.png"), 422, "logo_url", "user name or password")
        assert_error(post(logo_url="https://example.com/" + "a" * 2100), 422, "logo_url")
        assert_error(post(custom_domain="https://status.example.com/"), 422, "custom_domain",
                     "host name like status.example.com")
        assert_error(post(custom_domain="localhost"), 422, "custom_domain", "host name")
        assert_error(post(device_ids=[mine["id"], theirs["id"]]), 422, "device_ids[1]",
                     f"no such device: {theirs['id']}")
        assert_error(post(tags=["secret"]), 422, "tags[0]", "no device carries the tag 'secret'")
        assert_error(post(tags=["bad tag!"]), 422, "tags[0]", "letters, digits and -_.:/ only")
        assert_error(post(device_ids=list(range(1, 1002))), 422, "device_ids", "at most 1000")
        assert_error(post(device_ids=list(range(1, 996)), tags=[f"t{i}" for i in range(6)]), 422, "device_ids",
                     "at most 1000 device ids and tags together (got 1001)")
        assert_error(post(unknown=1), 422, "unknown", "extra")
        assert client.get("/v1/status-pages").json()["items"] == []


def test_another_tenants_page_is_not_found(tracker) -> None:
    with new_tenant(tracker) as client, new_tenant(tracker) as other:
        page = client.post("/v1/status-pages", json=_page()).json()
        assert other.get(f"/v1/status-pages/{page['id']}").status_code == 404
        assert other.put(f"/v1/status-pages/{page['id']}", json=_page(title="taken over")).status_code == 404
        assert other.delete(f"/v1/status-pages/{page['id']}").status_code == 404
        assert other.get("/v1/status-pages").json()["items"] == []
        assert client.get(f"/v1/status-pages/{page['id']}").json()["title"] == "Acme status"
        # the same slug is free for another tenant: pages live under each tenant's own host
        assert other.post("/v1/status-pages", json=_page()).status_code == 201


def test_openapi_lists_the_status_page_endpoints(tracker) -> None:
    with tracker.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/status-pages"]) >= {"get", "post"}
    assert set(paths["/v1/status-pages/{page_id}"]) >= {"get", "put", "delete"}
    assert paths["/v1/status-pages"]["post"]["summary"] == "Create a status page"


async def test_tags_that_cover_more_devices_than_a_page_holds_are_refused(pool, monkeypatch) -> None:
    """The cap counts the devices the tags resolve to, not only the entries (here with a cap of 2)."""
    from iot.egress import EgressPolicy
    from iot.errors import InputError
    from iot.repo import devices, status_pages, tenants

    monkeypatch.setattr(status_pages, "MAX_COMPONENTS", 2)
    tenant, _ = await tenants.create_tenant(pool, "capped")
    await devices.create_devices(pool, tenant.id, [
        devices.DeviceSpec(f"d{i}", "tcp", f"127.0.0.{i + 1}:1", tags=["many"]) for i in range(3)],
        egress=EgressPolicy.parse("127.0.0.0/8"))
    with pytest.raises(InputError, match="tags: these devices and tags cover 3 devices, at most 2 fit on one page"):
        await status_pages.create_page(pool, tenant.id, status_pages.PageSpec("p", "P", tags=["many"]))
    assert await status_pages.list_pages(pool, tenant.id) == []
