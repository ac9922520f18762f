"""Maintenance windows as time: validate a window's times and RRULE, and expand its occurrences (bounded).

Pure (no I/O): the tracker and dashboard validate with it, the worker's cache (`iot.worker.maintenance`)
and the repository expand with it. A window's first occurrence is [starts_at, ends_at); an RRULE
(RFC 5545, DTSTART = starts_at, in UTC) repeats it with the same duration.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dateutil import rrule as du_rrule

from iot.errors import InputError
from iot.inputs import ascii_int, control_character_problem

MAX_RRULE = 500
MAX_REASON = 500
MAX_DURATION = timedelta(days=31)
# Expansion walks a rule from its DTSTART. Rules repeating on a fixed period (hourly, daily, weekly in UTC)
# without COUNT start from a whole number of periods before the range instead (same occurrences, a few
# steps); COUNT is bounded; and expansion stops after this many steps whatever the rule, so a hostile
# window cannot make the worker or the API spin.
MAX_OCCURRENCES = 20_000
MAX_COUNT = 1000
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # windows start this century: expansion stays short
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
FIRST_WITHIN = timedelta(days=5 * 365)  # a rule must start repeating within this (checked once, on save)
PERIOD_S = {"HOURLY": 3600, "DAILY": 86400, "WEEKLY": 7 * 86400}
# Rules repeating faster than hourly are not maintenance; they would also make expansion expensive.
ALLOWED_FREQS = {"HOURLY": du_rrule.HOURLY, "DAILY": du_rrule.DAILY, "WEEKLY": du_rrule.WEEKLY,
                 "MONTHLY": du_rrule.MONTHLY, "YEARLY": du_rrule.YEARLY}
RRULE_HELP = ("an RFC 5545 RRULE such as 'FREQ=WEEKLY;BYDAY=SU' or 'FREQ=DAILY;COUNT=5' "
              "(FREQ HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY; UNTIL in UTC, e.g. 20270101T000000Z)")


@dataclass(frozen=True, slots=True)
class Times:
    """A window's timing: the first occurrence and an optional recurrence."""

    starts_at: datetime
    ends_at: datetime
    rrule: str | None = None

    @property
    def duration(self) -> timedelta:
        return self.ends_at - self.starts_at


def utc(value: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_within(value: datetime, field: str) -> datetime:
    """`value` in UTC between EARLIEST and LATEST, or InputError naming `field` (9999-12-31 at -05:00 has no
    UTC time: astimezone raises OverflowError)."""
    try:
        value = utc(value)
    except OverflowError:
        value = None
    if value is None or not EARLIEST <= value < LATEST:
        raise InputError(field, f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
    return value


def _whole(text: str, low: int, high: int) -> int | None:
    """`text` as an int in [low, high] when it is plain ASCII digits, else None."""
    value = ascii_int(text, 6)
    return value if value is not None and low <= value <= high else None


def parse_rrule(text: str, starts_at: datetime) -> du_rrule.rrule:
    """The rule for `text` starting at `starts_at`, or InputError('rrule', reason with an example)."""
    problem = control_character_problem(text)
    if problem or len(text) > MAX_RRULE:
        raise InputError("rrule", f"{problem or f'at most {MAX_RRULE} characters'}; send {RRULE_HELP}")
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[len("RRULE:"):]
    if not body or any(part in body.upper() for part in ("DTSTART", "\n", "EXDATE", "RDATE")):
        raise InputError("rrule", f"send only the rule (starts_at is its start): {RRULE_HELP}")
    parts = _parts(body)
    freq = parts.get("FREQ")
    if freq not in ALLOWED_FREQS:
        raise InputError("rrule", f"FREQ {freq or '(missing)'} is not allowed; send {RRULE_HELP}")
    if "INTERVAL" in parts and _whole(parts["INTERVAL"], 1, 1000) is None:
        raise InputError("rrule", f"INTERVAL must be 1-1000; send {RRULE_HELP}")
    if "COUNT" in parts and _whole(parts["COUNT"], 1, MAX_COUNT) is None:
        raise InputError("rrule", f"COUNT must be 1-{MAX_COUNT}; for longer use UNTIL or no end: {RRULE_HELP}")
    shape = _shape_problem(parts)
    if shape:
        raise InputError("rrule", f"{shape}; send {RRULE_HELP}")
    try:
        rule = du_rrule.rrulestr(body, dtstart=utc(starts_at))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InputError("rrule", f"not a valid RRULE ({str(exc)[:120]}); send {RRULE_HELP}") from None
    if not isinstance(rule, du_rrule.rrule):
        raise InputError("rrule", f"send one rule: {RRULE_HELP}")
    return rule


# dateutil walks a rule whose day filters never match (30 February, the 6th Monday, a BYDAY its INTERVAL
# steps over) to the year 9999 before giving up, for many seconds, and an UNTIL does not stop it. So only
# rules that match again within a few years are accepted: these parts, in these combinations.
PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYHOUR", "BYMINUTE",
         "BYSETPOS")
_WEEKDAY = re.compile(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")


def _shape_problem(parts: dict[str, str]) -> str | None:
    """Why this rule could never (or only after centuries) match again, or None."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        return f"{', '.join(unknown)} not supported (use {', '.join(PARTS)})"
    freq, interval = parts["FREQ"], int(parts.get("INTERVAL", "1"))
    days = [_WEEKDAY.fullmatch(d) for d in parts.get("BYDAY", "").split(",")] if "BYDAY" in parts else []
    if any(d is None for d in days):
        return "BYDAY takes weekdays such as MO,TU or 1MO (first Monday), -1FR (last Friday)"
    ordinals = [int(d.group(1)) for d in days if d and d.group(1)]
    if ordinals and (freq not in ("MONTHLY", "YEARLY") or any(not 1 <= abs(n) <= 4 for n in ordinals)):
        return "a numbered BYDAY (1MO .. 4MO, -1MO .. -4MO) needs FREQ=MONTHLY or YEARLY"
    if ordinals and "BYMONTHDAY" in parts:
        return "a numbered BYDAY and BYMONTHDAY together rarely or never match; use one of them"
    for day in parts.get("BYMONTHDAY", "").split(",") if "BYMONTHDAY" in parts else []:
        if not re.fullmatch(r"-?\d{1,2}", day) or not (1 <= int(day) <= 28 or day == "-1"):
            return "BYMONTHDAY takes 1-28 (days every month has) or -1 (the last day)"
    if "BYSETPOS" in parts and parts["BYSETPOS"] not in ("1", "-1"):
        return "BYSETPOS takes 1 (the first) or -1 (the last)"
    if freq == "HOURLY" and ("BYHOUR" in parts or "BYMINUTE" in parts):
        return "an hourly rule takes its minute from starts_at; drop BYHOUR and BYMINUTE"
    if interval > 1 and freq in ("HOURLY", "DAILY") and {"BYDAY", "BYMONTHDAY", "BYMONTH"} & set(parts):
        return f"with INTERVAL={interval}, a {freq.lower()} rule can step over the days BYDAY/BYMONTHDAY/BYMONTH " \
               "allow; drop the interval or the filter"
    if interval > 1 and freq == "MONTHLY" and "BYMONTH" in parts:
        return "with INTERVAL, a monthly rule can step over BYMONTH's months; use FREQ=YEARLY with BYMONTH"
    return None


def _bounded(rule: du_rrule.rrule, until: datetime) -> du_rrule.rrule:
    """The rule stopped at `until` (or its own UNTIL or COUNT): a rule whose BY* parts never match (30
    February) would otherwise be walked to the year 9999, for seconds."""
    if rule._count is not None or (rule._until is not None and rule._until <= until):  # noqa: SLF001
        return rule
    return rule.replace(until=until)


def _parts(body: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in body.upper().removeprefix("RRULE:").split(";") if "=" in p)


def _fast_forward(times: Times, since: datetime) -> datetime:
    """A DTSTART with the same occurrences from `since` on: whole periods after starts_at (fixed-period rules
    without COUNT only; BY* parts are calendar-absolute and UTC has no DST, so the phase is kept)."""
    parts = _parts(times.rrule or "")
    period_s = PERIOD_S.get(parts.get("FREQ", ""))
    interval = parts.get("INTERVAL", "1")
    if period_s is None or "COUNT" in parts or _whole(interval, 1, 1000) is None:
        return times.starts_at
    period = timedelta(seconds=period_s * int(interval))
    lead = since - times.duration - times.starts_at
    if lead <= period:
        return times.starts_at
    return times.starts_at + period * (lead // period - 1)


def check_times(starts_at: datetime, ends_at: datetime | None, duration_minutes: int | None,
                rrule: str | None) -> Times:
    """Validated times: exactly one of `ends_at` and `duration_minutes`, end after start, a bounded
    duration, and a rule that yields at least its first occurrence."""
    start = _utc_within(starts_at, "starts_at")
    if (ends_at is None) == (duration_minutes is None):
        raise InputError("ends_at", "send either ends_at or duration_minutes (exactly one of them)")
    if duration_minutes is not None:
        if not 1 <= duration_minutes <= MAX_DURATION.total_seconds() // 60:
            raise InputError("duration_minutes", f"must be between 1 and {int(MAX_DURATION.total_seconds() // 60)}")
        end = start + timedelta(minutes=duration_minutes)
    else:
        assert ends_at is not None
        end = _utc_within(ends_at, "ends_at")
        if end <= start:
            raise InputError("ends_at", f"must be after starts_at ({start.isoformat()}); send a later time")
        if end - start > MAX_DURATION:
            raise InputError("ends_at", f"a window lasts at most {MAX_DURATION.days} days; split longer work "
                                        "or use a recurrence")
    rule_text = rrule.strip() if rrule and rrule.strip() else None
    if rule_text is not None:
        rule = _bounded(parse_rrule(rule_text, start), start + FIRST_WITHIN)
        _check_no_overlap(rule_text, end - start, "duration_minutes" if duration_minutes is not None else "ends_at")
        if next(iter(rule), None) is None:
            raise InputError("rrule", f"the rule yields no occurrence within {FIRST_WITHIN.days // 365} years of "
                                      f"starts_at; send {RRULE_HELP}")
    return Times(start, end, rule_text)


def _check_no_overlap(rule_text: str, duration: timedelta, field: str) -> None:
    """Occurrences may not overlap: an hourly rule lasting a month would hold ~744 at every instant, and
    every expansion (worker, status pages, uptime) would walk them all."""
    parts = _parts(rule_text)
    period_s = PERIOD_S.get(parts.get("FREQ", ""))
    if period_s is None:  # monthly and yearly periods are longer than MAX_DURATION
        return
    period = timedelta(seconds=period_s * int(parts.get("INTERVAL", "1")))
    if duration > period:
        every = f"{period.days} days" if period.days > 1 else f"{int(period.total_seconds() // 3600)} hours"
        raise InputError(field, f"a window of {int(duration.total_seconds() // 60)} minutes is longer than the "
                                f"rule's period ({every}), so its occurrences would overlap; shorten it or "
                                "repeat less often")


def occurrences(times: Times, since: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
    """(start, end) of every occurrence overlapping [since, until), in order; bounded by MAX_OCCURRENCES."""
    duration = times.duration
    if times.rrule is None:
        if times.starts_at < until and times.ends_at > since:
            yield times.starts_at, times.ends_at
        return
    rule = _bounded(parse_rrule(times.rrule, _fast_forward(times, since)), until)
    for n, start in enumerate(rule):
        if start >= until or n >= MAX_OCCURRENCES:
            return
        if start + duration > since:
            yield start, start + duration


def current_or_next(times: Times, now: datetime, horizon: timedelta = timedelta(days=400)
                    ) -> tuple[datetime, datetime] | None:
    """The occurrence in progress at `now`, else the next one within `horizon`, else None."""
    return next(occurrences(times, now, now + horizon), None)
