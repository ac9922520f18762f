"""Maintenance times without I/O: recurrence expansion with dateutil (bounded) and the checks on times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iot.errors import InputError
from iot.maintenance import MAX_OCCURRENCES, Times, check_times, current_or_next, occurrences

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
    times = Times(SUNDAY, SUNDAY + timedelta(minutes=1), "FREQ=HOURLY")
    far = SUNDAY + timedelta(hours=MAX_OCCURRENCES + 10)
    assert list(occurrences(times, far - timedelta(hours=1), far)) == []


@pytest.mark.parametrize(("rule", "reason"), [
    ("FREQ=SECONDLY", "FREQ SECONDLY is not allowed"),
    ("DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY", "control characters"),
    ("FREQ=DAILY;DTSTART=20260101T000000Z", "send only the rule"),
    ("FREQ=DAILY;INTERVAL=x", "not a valid RRULE"),
    ("FREQ=DAILY;UNTIL=20270101T000000", "not a valid RRULE"),  # UNTIL must be UTC with an aware start
])
def test_bad_rules_name_the_field_and_show_an_example(rule: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        check_times(SUNDAY, None, 10, rule)
    assert caught.value.field == "rrule" and reason in caught.value.reason
    assert "FREQ=WEEKLY;BYDAY=SU" in caught.value.reason
