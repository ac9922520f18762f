"""Quorum and latency-anomaly decisions of the evaluator (pure logic)."""

from iot.worker.state import RegionView, Thresholds, decide, quorum_need

TH = Thresholds(quorum_min=2, failures_to_down=2, anomaly_factor=4.0, anomaly_min_ms=100.0, anomaly_checks=3,
                warmup=5, alpha=0.2)
ALL = frozenset({"a", "b", "c"})


def _feed(view: RegionView, oks: list[bool], start: float = 1.0, latency: float = 5.0) -> float:
    t = start
    for ok in oks:
        view.apply(ok, latency if ok else None, None if ok else "HTTP 500", t, TH, TH.anomaly_factor, TH.anomaly_min_ms)
        t += 10
    return t


def test_quorum_need_is_at_least_min_and_half():
    assert quorum_need(3, 2) == 2
    assert quorum_need(4, 2) == 2
    assert quorum_need(6, 2) == 3
    assert quorum_need(1, 2) == 2


def test_down_needs_consecutive_failures_in_a_quorum_of_regions():
    views = {r: RegionView() for r in ALL}
    for r in ALL:
        _feed(views[r], [True])
    assert decide(views, ALL, TH, 3, 0).state == "up"
    _feed(views["a"], [False, False], start=100)
    assert decide(views, ALL, TH, 3, 0).state == "up"  # one region is not a quorum
    _feed(views["b"], [False], start=100)
    assert decide(views, ALL, TH, 3, 0).state == "up"  # a single failure is not consecutive
    _feed(views["b"], [False], start=200)
    verdict = decide(views, ALL, TH, 3, 0)
    assert verdict.state == "down" and set(verdict.failing) == {"a", "b"}
    _feed(views["a"], [True], start=300)
    assert decide(views, ALL, TH, 3, 0).state == "up"


def test_unhealthy_regions_are_excluded_from_the_quorum():
    views = {r: RegionView() for r in ALL}
    for r in ("a", "b"):
        _feed(views[r], [False, False])
    _feed(views["c"], [True])
    assert decide(views, ALL, TH, 3, 0).state == "down"
    # a and b are unhealthy (their network is cut): only c votes, and c passes
    assert decide(views, frozenset({"c"}), TH, 3, 0).state == "up"


def test_stale_views_do_not_vote():
    views = {r: RegionView() for r in ALL}
    for r in ALL:
        _feed(views[r], [False, False], start=1)
    assert decide(views, ALL, TH, 3, fresh_after=1000).state is None


def test_repeated_result_is_not_counted_twice():
    view = RegionView()
    assert view.apply(False, None, "x", 10.0, TH, 4.0, 100.0)
    assert not view.apply(False, None, "x", 10.0, TH, 4.0, 100.0)
    assert view.consecutive_failures == 1


def test_slow_device_becomes_degraded_and_recovers():
    views = {r: RegionView() for r in ALL}
    t = 1.0
    for r in ALL:
        t = _feed(views[r], [True] * 10, start=1.0, latency=5.0)
    assert decide(views, ALL, TH, 3, 0).state == "up"
    for r in ALL:
        _feed(views[r], [True] * 2, start=t, latency=300.0)
    assert decide(views, ALL, TH, 3, 0).state == "up"  # two slow checks are not enough
    for r in ALL:
        _feed(views[r], [True], start=t + 20, latency=300.0)
    verdict = decide(views, ALL, TH, 3, 0)
    assert verdict.state == "degraded"
    assert views["a"].mean_ms is not None and views["a"].mean_ms < 10  # baseline not dragged up
    for r in ALL:
        _feed(views[r], [True], start=t + 30, latency=6.0)
    assert decide(views, ALL, TH, 3, 0).state == "up"
