"""Maintenance windows over the tenant API (issue 14): create one-off and recurring windows, refuse bad
input with the field and the fix, list them with their next occurrence, never show another tenant's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from test_tracker_api import assert_error, http_device, new_tenant


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def test_one_off_window_for_a_tag_is_created_listed_replaced_and_deleted(tracker) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with new_tenant(tracker) as client:
        client.post("/v1/devices", json=http_device("pump-1", tags=["site/berlin"]))
        made = client.post("/v1/maintenance", json={
            "scope": "tag", "tag": "Site/Berlin", "reason": "Firmware upgrade", "starts_at": _iso(start),
            "duration_minutes": 60})
        assert made.status_code == 201, made.text
        window = made.json()
        assert window["tag"] == "site/berlin" and window["scope"] == "tag"
        assert window["ends_at"] == _iso(start + timedelta(hours=1)) and window["active"] is True
        assert window["next_starts_at"] == _iso(start)

        listed = client.get("/v1/maintenance").json()
        assert [w["id"] for w in listed["items"]] == [window["id"]] and listed["next_before"] is None
        replaced = client.put(f"/v1/maintenance/{window['id']}", json={
            "scope": "tenant", "reason": "Network move", "starts_at": _iso(start + timedelta(days=1)),
            "ends_at": _iso(start + timedelta(days=1, hours=2)), "pinned": True})
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["active"] is False and replaced.json()["tag"] is None
        assert client.get(f"/v1/maintenance/{window['id']}").json()["reason"] == "Network move"
        assert client.delete(f"/v1/maintenance/{window['id']}").status_code == 204
        assert client.get(f"/v1/maintenance/{window['id']}").status_code == 404


def test_recurring_window_reports_its_next_occurrence(tracker) -> None:
    # Every Sunday 02:00-04:00 UTC from a Sunday in the past: the next occurrence is the coming Sunday
    # (or today's, when it is in progress).
    first = datetime(2026, 1, 4, 2, 0, tzinfo=UTC)  # a Sunday
    now = datetime.now(UTC)
    with new_tenant(tracker) as client:
        made = client.post("/v1/maintenance", json={
            "reason": "Weekly backups", "starts_at": _iso(first), "duration_minutes": 120,
            "rrule": "RRULE:FREQ=WEEKLY;BYDAY=SU"})
        assert made.status_code == 201, made.text
        window = made.json()
    next_start = datetime.fromisoformat(window["next_starts_at"])
    assert next_start.weekday() == 6 and (next_start.hour, next_start.minute) == (2, 0)
    assert next_start + timedelta(hours=2) > now and next_start - now < timedelta(days=7)
    assert window["active"] == (next_start <= now)
    assert window["rrule"] == "RRULE:FREQ=WEEKLY;BYDAY=SU"


def test_bad_windows_are_refused_with_the_field_and_a_fix(tracker) -> None:
    start = _iso(datetime.now(UTC))
    with new_tenant(tracker) as client:
        device = client.post("/v1/devices", json=http_device("only")).json()

        def post(**body):
            return client.post("/v1/maintenance", json={"reason": "r", "starts_at": start, **body})

        assert_error(post(duration_minutes=10, rrule="FREQ=SOMETIMES"), 422, "rrule", "FREQ SOMETIMES is not allowed")
        assert_error(post(duration_minutes=10, rrule="FREQ=DAILY;BYDAY=XX"), 422, "rrule", "BYDAY takes weekdays")
        assert_error(post(duration_minutes=10, rrule="FREQ=DAILY;BYHOUR=24"), 422, "rrule", "not a valid RRULE")
        assert_error(post(duration_minutes=10, rrule="FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=30"), 422, "rrule",
                     "BYMONTHDAY takes 1-28")
        assert_error(post(duration_minutes=10, rrule="FREQ=MINUTELY"), 422, "rrule", "FREQ=WEEKLY;BYDAY=SU")
        assert_error(post(duration_minutes=10, rrule="FREQ=DAILY;UNTIL=20200101T000000Z"), 422, "rrule",
                     "yields no occurrence")
        assert_error(post(ends_at="2020-01-01T00:00:00Z"), 422, "ends_at", "must be after starts_at")
        assert_error(post(), 422, "ends_at", "either ends_at or duration_minutes")
        assert_error(post(duration_minutes=10, ends_at=start), 422, "ends_at", "exactly one")
        assert_error(post(duration_minutes=10, scope="tag", tag="nobody/has"), 422, "tag",
                     "no device carries the tag 'nobody/has'")
        assert_error(post(duration_minutes=10, scope="tag"), 422, "tag", "required when scope is 'tag'")
        assert_error(post(duration_minutes=10, scope="device", device_id=device["id"] + 1000), 422, "device_id",
                     "no such device")
        assert_error(post(duration_minutes=10, device_id=device["id"]), 422, "device_id", "only for scope 'device'")
        assert_error(post(duration_minutes=10, reason="line\nbreak"), 422, "reason", "control characters")
        assert_error(post(duration_minutes=10, reason="x" * 501), 422, "reason")
        assert_error(post(duration_minutes=0), 422, "duration_minutes")
        # times at the calendar's edges and digits that are not ASCII are refused, not a 500
        assert_error(post(starts_at="9999-12-31T23:00:00-05:00", duration_minutes=10), 422, "starts_at", "between")
        assert_error(post(starts_at="0001-01-01T00:00:00+05:00", duration_minutes=10), 422, "starts_at", "between")
        assert_error(post(ends_at="9999-12-31T23:00:00-05:00"), 422, "ends_at", "between")
        assert_error(post(duration_minutes=10, rrule="FREQ=DAILY;INTERVAL=\u00b2"), 422, "rrule", "INTERVAL")
        assert_error(post(duration_minutes=10, rrule="FREQ=DAILY;COUNT=\u0663"), 422, "rrule", "COUNT")
        # occurrences that overlap each other would pile up without end in every expansion
        assert_error(post(duration_minutes=61, rrule="FREQ=HOURLY"), 422, "duration_minutes",
                     "longer than the rule's period")
        assert_error(post(duration_minutes=3 * 24 * 60, rrule="FREQ=DAILY;INTERVAL=2"), 422, "duration_minutes",
                     "2 days")
        assert client.get("/v1/maintenance").json()["items"] == []


def test_a_tenant_has_at_most_200_windows(tracker) -> None:
    start = _iso(datetime.now(UTC) + timedelta(days=1))
    with new_tenant(tracker) as client:
        for n in range(200):
            made = client.post("/v1/maintenance", json={"reason": f"w{n}", "starts_at": start, "duration_minutes": 5})
            assert made.status_code == 201, made.text
        assert_error(client.post("/v1/maintenance", json={"reason": "one more", "starts_at": start,
                                                          "duration_minutes": 5}), 409, "body", "at most 200")
        first = client.get("/v1/maintenance", params={"limit": 1}).json()["items"][0]["id"]
        assert client.delete(f"/v1/maintenance/{first}").status_code in (200, 204)
        assert client.post("/v1/maintenance", json={"reason": "fits again", "starts_at": start,
                                                    "duration_minutes": 5}).status_code == 201


def test_another_tenants_windows_and_devices_are_out_of_reach(tracker) -> None:
    start = _iso(datetime.now(UTC))
    with new_tenant(tracker) as owner, new_tenant(tracker) as other:
        device = owner.post("/v1/devices", json=http_device("private", tags=["secret"])).json()
        window = owner.post("/v1/maintenance", json={"reason": "mine", "starts_at": start, "duration_minutes": 5,
                                                     "scope": "device", "device_id": device["id"]}).json()
        assert other.get(f"/v1/maintenance/{window['id']}").status_code == 404
        assert other.delete(f"/v1/maintenance/{window['id']}").status_code == 404
        assert other.put(f"/v1/maintenance/{window['id']}", json={
            "reason": "x", "starts_at": start, "duration_minutes": 5}).status_code == 404
        assert other.get("/v1/maintenance").json()["items"] == []
        # its device and tag do not exist for anyone else
        assert_error(other.post("/v1/maintenance", json={"reason": "x", "starts_at": start, "duration_minutes": 5,
                                                         "scope": "device", "device_id": device["id"]}),
                     422, "device_id", "no such device")
        assert_error(other.post("/v1/maintenance", json={"reason": "x", "starts_at": start, "duration_minutes": 5,
                                                         "scope": "tag", "tag": "secret"}), 422, "tag")
        assert owner.get(f"/v1/maintenance/{window['id']}").json()["reason"] == "mine"
