"""Pure parts of the dashboard: host -> tenant, session cookies, CSV parsing, chart geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iot.dashboard.charts import WINDOWS, Bucket, build_chart, nice_ceiling
from iot.dashboard.csv_import import parse_devices_csv
from iot.dashboard.main import settings_problem
from iot.dashboard.routes.auth import safe_next
from iot.dashboard.session import SessionCodec, csrf_matches
from iot.dashboard.tenancy import tenant_slug_from_host
from iot.settings import DashboardSettings


@pytest.mark.parametrize(("host", "slug"), [
    ("acme.localhost", "acme"), ("ACME.localhost:8000", "acme"), ("acme.localhost.", "acme"),
    ("acme.my-iot-app.com", None), ("localhost", None), ("a.b.localhost", None), ("docs.localhost", None),
    ("www.localhost", None), ("frankfurt.localhost", None), ("api.localhost", None), ("", None), (None, None),
    ("[::1]:8000", None), ("evil.com", None), ("xlocalhost", None),
])
def test_tenant_is_the_first_label_under_the_domain(host, slug) -> None:
    assert tenant_slug_from_host(host, "localhost", frozenset({"frankfurt"})) == slug


def test_tenant_under_a_real_domain() -> None:
    assert tenant_slug_from_host("acme.my-iot-app.com", "my-iot-app.com") == "acme"
    assert tenant_slug_from_host("my-iot-app.com", "my-iot-app.com") is None


def test_session_cookie_round_trip_and_tampering() -> None:
    codec = SessionCodec("secret-one-0123456789")
    session, cookie = codec.new(7, "acme", "ab" * 32)
    assert session.key_fingerprint == "ab" * 8
    assert codec.decode(cookie) == session
    assert codec.decode(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) is None
    assert SessionCodec("another-secret-0123456789").decode(cookie) is None
    assert codec.decode("") is None and codec.decode(None) is None
    assert csrf_matches(session, session.csrf) and not csrf_matches(session, "x") and not csrf_matches(session, None)
    # Two sessions never share a CSRF token.
    assert codec.new(7, "acme", "ab" * 32)[0].csrf != session.csrf


@pytest.mark.parametrize(("target", "expected"), [
    ("/devices?state=down", "/devices?state=down"), ("//evil.example/", "/"), ("https://evil.example/", "/"),
    ("/\\evil.example", "/"), ("", "/"), (None, "/"), ("devices", "/"),
])
def test_sign_in_only_returns_to_local_paths(target, expected) -> None:
    assert safe_next(target) == expected


def test_csv_rows_become_device_dicts_with_typed_values() -> None:
    parsed = parse_devices_csv("\ufeffName,Kind,Target,interval_s,enabled\nA,http,http://x/,30,false\n\nB,push,,,\n")
    assert parsed.problems == []
    assert parsed.devices == [{"name": "A", "kind": "http", "target": "http://x/", "interval_s": 30, "enabled": False},
                              {"name": "B", "kind": "push"}]
    assert parsed.lines == [2, 4]


@pytest.mark.parametrize(("text", "message"), [
    ("", "the CSV is empty"),
    ("name,kind\n", "the CSV has a header but no devices"),
    ("name,kind\na,http,extra\n", "line 2: has 3 values but the header has 2 columns"),
    ("name,kind,interval_s\na,http,often\n", "line 2: interval_s: must be a whole number, got 'often'"),
    ("name,kind,enabled\na,http,maybe\n", "line 2: enabled: must be true or false"),
    ("name,colour\n", "missing column(s) kind; unknown column(s) colour"),
    # hostile cells: deep JSON nesting (RecursionError) and a cell past the csv module's field limit
    ("name,kind,target,options\na,http,http://x/," + "[" * 100_000 + "\n", "line 2: options: must be a JSON object"),
    ("name,kind,target,options\na,http,http://x/,\"{\"\"k\"\": \"\"" + "v" * 200_000 + "\"\"}\"\n",
     "line 2: a cell is longer than"),
])
def test_csv_problems_name_the_line_and_the_fix(text, message) -> None:
    problems = [str(p) for p in parse_devices_csv(text).problems]
    assert any(message in p for p in problems), problems


def test_nice_axis_maximum() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 9, 11, 180, 201, 999)] == [1.0, 1.0, 10, 20, 200, 500, 1000]


def test_chart_draws_one_line_per_region_breaks_at_gaps_and_marks_failures() -> None:
    end = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    buckets = [Bucket("frankfurt", end - timedelta(minutes=m), 4, 0, 10.0 + m) for m in range(0, 20)]
    buckets += [Bucket("frankfurt", end - timedelta(minutes=m), 4, 0, 40.0) for m in range(40, 50)]  # gap 20-40
    buckets += [Bucket("tokyo", end - timedelta(minutes=30), 4, 4, None)]  # all failed: no latency
    buckets += [Bucket("tokyo", end - timedelta(hours=3), 4, 0, 999.0)]  # outside the window: ignored
    chart = build_chart(buckets, WINDOWS["hour"], end, regions=["amsterdam"])
    by_region = {s.region: s for s in chart.series}
    assert list(by_region) == ["amsterdam", "frankfurt", "tokyo"]
    assert by_region["amsterdam"].paths == [] and by_region["amsterdam"].checks == 0
    assert len(by_region["frankfurt"].paths) == 2
    assert [len(p.split()) for p in by_region["frankfurt"].paths] == [10, 20]
    assert by_region["tokyo"].failures == 4 and by_region["tokyo"].paths == []
    assert len(chart.failure_marks) == 1 and "4 of 4 checks failed" in chart.failure_marks[0][2]
    # Peak 40 ms -> axis up to 50 ms; y grows downwards in SVG.
    assert chart.y_ticks[-1][1] == "50 ms"
    x0, y0, x1, y1 = chart.plot
    xs = [float(pt.split(",")[0]) for p in by_region["frankfurt"].paths for pt in p.split()]
    ys = [float(pt.split(",")[1]) for p in by_region["frankfurt"].paths for pt in p.split()]
    assert all(x0 <= x <= x1 for x in xs) and all(y0 <= y <= y1 for y in ys)
    assert max(xs) == x1, "the newest bucket sits on the right edge"
    assert [label for _, label in chart.x_ticks] == ["11:00", "11:10", "11:20", "11:30", "11:40", "11:50", "12:00"]
    assert not chart.empty


def test_a_single_measurement_is_drawn_as_a_dot() -> None:
    end = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    chart = build_chart([Bucket("frankfurt", end - timedelta(minutes=1), 2, 0, 12.0)], WINDOWS["hour"], end)
    (series,) = chart.series
    assert len(series.dots) == 1 and series.last_latency_ms == 12.0


def test_empty_chart_says_so() -> None:
    assert build_chart([], WINDOWS["day"], datetime.now(UTC)).empty


def test_dashboard_refuses_the_published_session_secret_unless_development_is_explicit() -> None:
    # On localhost too: a dashboard reached from elsewhere (a port forward, a LAN) is no safer.
    own_db = "postgresql://iot:not-published-0123@db:5432/iot"
    for domain in ("localhost", "my-iot-app.com"):
        problem = settings_problem(DashboardSettings(domain=domain, database_url=own_db))
        assert problem and problem.startswith("SESSION_SECRET is published") and "ALLOW_DEFAULT_SECRETS" in problem
        assert settings_problem(DashboardSettings(domain=domain, database_url=own_db, allow_default_secrets=True)) is None
    assert settings_problem(DashboardSettings(domain="my-iot-app.com", database_url=own_db, session_secret="x" * 40)) is None
    assert "shorter than 16" in settings_problem(DashboardSettings(session_secret="short"))
