"""Maintenance times without I/O: recurrence expansion with dateutil (bounded) and the checks on times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iot.errors import InputError
from iot.maintenance import Times, check_times, current_or_next, occurrences

SUNDAY = datetime(2026, 1, 4, 2, 0, tzinfo=UTC)


def test_weekly_rule_expands_to_each_sunday_with_the_same_duration() -> None:
    times = check_times(SUNDAY, None, 90, "FREQ=WEEKLY;BYDAY=SU")
    spans = list(occurrences(times, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 22, tzinfo=UTC)))
    assert spans == [(datetime(2026, 2, d, 2, 0, tzinfo=UTC), datetime(2026, 2, d, 3, 30, tzinfo=UTC))
                     for d in (1, 8, 15)]


def test_an_occurrence_in_progress_is_current_and_a_finished_rule_has_none() -> None:
    times = check_times(SUNDAY, None, 90, "FREQ=WEEKLY;COUNT=2")
    assert current_or_next(times, SUNDAY + timedelta(minutes=30)) == (SUNDAY, SUNDAY + timedelta(minutes=90))
    second = SUNDAY + timedelta(days=7)
    assert current_or_next(times, SUNDAY + timedelta(hours=2)) == (second, second + timedelta(minutes=90))
    assert current_or_next(times, second + timedelta(hours=2)) is None


def test_a_one_off_window_overlaps_only_its_own_span() -> None:
    times = check_times(SUNDAY, SUNDAY + timedelta(hours=1), None, None)
    assert list(occurrences(times, SUNDAY + timedelta(hours=1), SUNDAY + timedelta(hours=2))) == []
    assert list(occurrences(times, SUNDAY - timedelta(hours=1), SUNDAY + timedelta(seconds=1))) == [
        (SUNDAY, SUNDAY + timedelta(hours=1))]


def test_expansion_stops_after_the_bound_whatever_the_range() -> None:
    # A monthly rule (not fast-forwarded) far older than any window the API accepts.
    times = Times(datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 1, 0, 1, tzinfo=UTC), "FREQ=MONTHLY")
    assert list(occurrences(times, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))) == []


def test_starts_at_must_be_this_century() -> None:
    with pytest.raises(InputError) as caught:
        check_times(datetime(1970, 1, 1, tzinfo=UTC), None, 10, None)
    assert caught.value.field == "starts_at" and "2000" in caught.value.reason


@pytest.mark.parametrize(("rule", "reason"), [
    ("FREQ=SECONDLY", "FREQ SECONDLY is not allowed"),
    ("DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY", "control characters"),
    ("FREQ=DAILY;DTSTART=20260101T000000Z", "send only the rule"),
    ("FREQ=DAILY;INTERVAL=x", "INTERVAL must be 1-1000"),
    ("FREQ=DAILY;BYHOUR=25", "not a valid RRULE"),
    ("FREQ=DAILY;UNTIL=20270101T000000", "not a valid RRULE"),  # UNTIL must be UTC with an aware start
])
def test_bad_rules_name_the_field_and_show_an_example(rule: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        check_times(SUNDAY, None, 10, rule)
    assert caught.value.field == "rrule" and reason in caught.value.reason
    assert "FREQ=WEEKLY;BYDAY=SU" in caught.value.reason


@pytest.mark.parametrize("rule", [
    "FREQ=HOURLY", "FREQ=HOURLY;INTERVAL=5", "FREQ=HOURLY;BYDAY=SA,SU", "FREQ=DAILY;INTERVAL=3",
    "FREQ=DAILY;BYDAY=MO,WE,FR;BYHOUR=1,13", "FREQ=WEEKLY;INTERVAL=2;BYDAY=SU,TH", "FREQ=WEEKLY;WKST=SU;INTERVAL=3;BYDAY=SU,WE",
    "FREQ=WEEKLY;INTERVAL=3;BYDAY=SA;BYSETPOS=1", "FREQ=DAILY;UNTIL=20270601T000000Z",
])
def test_fast_forwarded_expansion_equals_walking_from_the_start(rule: str) -> None:
    """Old rules start near the range, not at their first occurrence: the same occurrences either way."""
    from dateutil import rrule as du_rrule

    start = datetime(2024, 2, 29, 7, 15, tzinfo=UTC)
    times = check_times(start, None, 50, rule)
    since, until = datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 4, 15, tzinfo=UTC)
    walked = [(s, s + timedelta(minutes=50)) for s in du_rrule.rrulestr(rule, dtstart=start)
              .between(since - timedelta(minutes=50), until, inc=True)
              if s + timedelta(minutes=50) > since and s < until]
    assert list(occurrences(times, since, until)) == walked


def test_an_hourly_window_from_years_ago_expands_in_a_few_steps() -> None:
    import time

    times = check_times(datetime(2001, 1, 1, tzinfo=UTC), None, 10, "FREQ=HOURLY")  # 230,000 hours ago
    began = time.perf_counter()
    now = datetime(2027, 3, 1, 12, 5, tzinfo=UTC)
    assert current_or_next(times, now) == (datetime(2027, 3, 1, 12, tzinfo=UTC),
                                           datetime(2027, 3, 1, 12, 10, tzinfo=UTC))
    assert time.perf_counter() - began < 0.05


def test_count_is_bounded() -> None:
    with pytest.raises(InputError) as caught:
        check_times(SUNDAY, None, 10, "FREQ=DAILY;COUNT=5000")
    assert caught.value.field == "rrule" and "COUNT must be 1-1000" in caught.value.reason


@pytest.mark.parametrize(("rule", "reason"), [
    ("FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=30", "BYMONTHDAY takes 1-28"),
    ("FREQ=DAILY;BYYEARDAY=366;BYMONTH=1", "BYYEARDAY not supported"),
    ("FREQ=MONTHLY;BYDAY=6MO", "numbered BYDAY (1MO .. 4MO"),
    ("FREQ=MONTHLY;BYDAY=1MO;BYMONTHDAY=20", "rarely or never match"),
    ("FREQ=DAILY;INTERVAL=7;BYDAY=TU", "can step over"),
    ("FREQ=MONTHLY;INTERVAL=2;BYMONTH=2", "use FREQ=YEARLY with BYMONTH"),
    ("FREQ=HOURLY;INTERVAL=2;BYHOUR=1", "drop BYHOUR"),
    ("FREQ=MONTHLY;BYMONTHDAY=1;BYSETPOS=2", "BYSETPOS takes 1"),
    ("FREQ=WEEKLY;BYDAY=XX", "BYDAY takes weekdays"),
])
def test_rules_that_would_never_match_again_are_refused_at_once(rule: str, reason: str) -> None:
    """dateutil would walk them to the year 9999 (seconds of CPU per request): refused before parsing."""
    import time

    began = time.perf_counter()
    with pytest.raises(InputError) as caught:
        check_times(SUNDAY, None, 10, rule)
    assert caught.value.field == "rrule" and reason in caught.value.reason, caught.value.reason
    assert time.perf_counter() - began < 0.1


@pytest.mark.parametrize("rule", [
    "FREQ=MONTHLY;BYDAY=1SU", "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=22;BYMINUTE=30", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1",
    "FREQ=MONTHLY;BYMONTHDAY=13;BYDAY=FR", "FREQ=WEEKLY;INTERVAL=2;BYDAY=SA,SU", "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
])
def test_usual_maintenance_rules_are_accepted(rule: str) -> None:
    assert check_times(SUNDAY, None, 10, rule).rrule == rule


def test_a_yearly_rule_on_the_last_day_of_february_finds_next_year() -> None:
    times = check_times(datetime(2027, 2, 28, 22, tzinfo=UTC), None, 60, "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1")
    assert current_or_next(times, datetime(2027, 3, 1, tzinfo=UTC)) == (
        datetime(2028, 2, 29, 22, tzinfo=UTC), datetime(2028, 2, 29, 23, tzinfo=UTC))


def test_interval_zero_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        check_times(SUNDAY, None, 10, "FREQ=DAILY;INTERVAL=0")
    assert "INTERVAL must be 1-1000" in caught.value.reason
