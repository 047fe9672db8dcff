"""Recurring series' rules, without the emulator: the RRULE subset accepted, occurrences in local
wall time across daylight-saving changes, COUNT and UNTIL, the horizon, and hostile rules refused
as invalid-argument naming the problem (pack427/accepting/recurrence.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from pack427 import constants
from pack427.accepting import recurrence
from pack427.errors import InvalidArgument

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def local(occurrences: list[datetime], zone: ZoneInfo) -> list[str]:
    return [at.astimezone(zone).strftime("%Y-%m-%d %a %H:%M %Z") for at in occurrences]


# ------------------------------------------------------------ daylight-saving changes, two zones


def test_a_weekly_rule_keeps_its_local_time_across_the_spring_change_in_berlin():
    # Berlin goes from CET (+1) to CEST (+2) on Sunday 2026-03-29.
    start = datetime(2026, 3, 16, 7, 0, tzinfo=UTC)  # Mon 08:00 CET
    found = recurrence.occurrences("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;COUNT=4", "Europe/Berlin", start)
    assert local(found, BERLIN) == ["2026-03-16 Mon 09:00 CET", "2026-03-23 Mon 09:00 CET",
                                    "2026-03-30 Mon 09:00 CEST", "2026-04-06 Mon 09:00 CEST"]
    # As instants: 08:00 UTC before the change, 07:00 UTC after it.
    assert [at.hour for at in found] == [8, 8, 7, 7] and all(at.tzinfo is UTC for at in found)


def test_a_weekly_rule_keeps_its_local_time_across_the_spring_change_in_new_york():
    # New York goes from EST (-5) to EDT (-4) on Sunday 2026-03-08.
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    found = recurrence.occurrences("FREQ=WEEKLY;BYDAY=TU,TH;BYHOUR=9;BYMINUTE=30;COUNT=4", "America/New_York", start)
    assert local(found, NEW_YORK) == ["2026-03-03 Tue 09:30 EST", "2026-03-05 Thu 09:30 EST",
                                      "2026-03-10 Tue 09:30 EDT", "2026-03-12 Thu 09:30 EDT"]
    assert [at.hour for at in found] == [14, 14, 13, 13]


@pytest.mark.parametrize(("zone", "start", "change"), [
    ("Europe/Berlin", datetime(2026, 10, 23, 4, 0, tzinfo=UTC), "2026-10-25"),  # CEST -> CET
    ("America/New_York", datetime(2026, 10, 30, 10, 0, tzinfo=UTC), "2026-11-01"),  # EDT -> EST
])
def test_a_daily_rule_keeps_its_local_time_across_the_autumn_change(zone, start, change):
    found = recurrence.occurrences("FREQ=DAILY;BYHOUR=9;BYMINUTE=0;COUNT=5", zone, start)
    as_local = [at.astimezone(ZoneInfo(zone)) for at in found]
    assert [at.strftime("%H:%M") for at in as_local] == ["09:00"] * 5
    assert [at.date() for at in as_local] == [as_local[0].date() + timedelta(days=n) for n in range(5)]
    # 24 hours apart, but 25 across the change, the night the clocks went back.
    gaps = {f"{b.astimezone(ZoneInfo(zone)):%Y-%m-%d}": (b - a) / timedelta(hours=1)
            for a, b in zip(found, found[1:], strict=False)}
    assert gaps.pop(change) == 25 and set(gaps.values()) == {24}


def test_a_local_time_that_does_not_exist_that_day_comes_at_the_offset_before_the_change():
    # 02:30 does not exist in Berlin on 2026-03-29: it is delivered at 02:30 CET, 03:30 CEST on the clock.
    found = recurrence.occurrences("FREQ=DAILY;BYHOUR=2;BYMINUTE=30;COUNT=3", "Europe/Berlin",
                                   datetime(2026, 3, 28, 0, 0, tzinfo=UTC))
    assert local(found, BERLIN) == ["2026-03-28 Sat 02:30 CET", "2026-03-29 Sun 03:30 CEST",
                                    "2026-03-30 Mon 02:30 CEST"]


# ------------------------------------------------------------ the first occurrence, COUNT and UNTIL


def test_the_first_occurrence_is_the_first_instance_at_or_after_deliver_at():
    nine = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday
    rule = "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;COUNT=2"
    assert recurrence.occurrences(rule, "UTC", nine)[0] == nine  # at deliverAt: that one
    assert recurrence.occurrences(rule, "UTC", nine + timedelta(milliseconds=1))[0] == nine + timedelta(days=1)
    # No BYHOUR/BYMINUTE: deliverAt's own time of day, on whole minutes (the next one after 10:15:30).
    found = recurrence.occurrences("FREQ=WEEKLY;COUNT=2", "UTC", datetime(2026, 5, 4, 10, 15, 30, tzinfo=UTC))
    assert found == [datetime(2026, 5, 4, 10, 16, tzinfo=UTC), datetime(2026, 5, 11, 10, 16, tzinfo=UTC)]


def test_count_makes_that_many_occurrences():
    found = recurrence.occurrences("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0;COUNT=3", "Europe/Berlin",
                                   datetime(2026, 1, 1, tzinfo=UTC))
    assert local(found, BERLIN) == ["2026-01-30 Fri 17:00 CET", "2026-02-27 Fri 17:00 CET",
                                    "2026-03-27 Fri 17:00 CET"]


@pytest.mark.parametrize("until", ["20260510T090000", "20260510T070000Z"], ids=["local", "UTC"])
def test_until_is_inclusive_in_local_time_or_utc(until):
    # 09:00 Berlin on 2026-05-10 is 07:00 UTC (CEST): both spellings end the series with that occurrence.
    found = recurrence.occurrences(f"RRULE:FREQ=DAILY;BYHOUR=9;BYMINUTE=0;UNTIL={until}", "Europe/Berlin",
                                   datetime(2026, 5, 7, tzinfo=UTC))
    assert local(found, BERLIN)[-1] == "2026-05-10 Sun 09:00 CEST" and len(found) == 4


def test_several_times_a_day_an_hour_apart_are_accepted():
    found = recurrence.occurrences("FREQ=DAILY;BYHOUR=8,9,20;BYMINUTE=0;COUNT=4", "UTC",
                                   datetime(2026, 5, 4, tzinfo=UTC))
    assert [at.hour for at in found] == [8, 9, 20, 8]


def test_a_rule_up_to_the_horizon_is_accepted():
    start = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    found = recurrence.occurrences("FREQ=DAILY;UNTIL=20270504T090000Z", "UTC", start)
    assert (len(found), found[-1]) == (366, start + timedelta(days=constants.RECURRENCE_HORIZON_DAYS))


# ------------------------------------------------------------ hostile rules


HOSTILE = [
    ("FREQ=MINUTELY;COUNT=5", "UTC", "more often than once an hour"),
    ("FREQ=SECONDLY;COUNT=5", "UTC", "more often than once an hour"),
    ("FREQ=HOURLY;COUNT=5", "UTC", "more often than once an hour"),
    ("FREQ=DAILY;BYHOUR=9;BYMINUTE=0,30;COUNT=5", "UTC", "30 minutes apart"),
    ("FREQ=DAILY;BYHOUR=23,0;BYMINUTE=30,59;COUNT=5", "UTC", "minutes apart"),
    ("FREQ=DAILY;BYHOUR=2,3;BYMINUTE=30;COUNT=20", "America/New_York", "less than an hour apart"),  # 2026-03-08
    ("FREQ=DAILY", "UTC", "give exactly one of COUNT"),
    ("FREQ=DAILY;COUNT=3;UNTIL=20260601T000000Z", "UTC", "give exactly one of COUNT"),
    ("FREQ=DAILY;COUNT=401", "UTC", "COUNT: 401 is out of range"),
    ("FREQ=DAILY;COUNT=0", "UTC", "COUNT: 0 is out of range"),
    ("FREQ=DAILY;BYHOUR=8,20;UNTIL=20270301T000000Z", "UTC", "more than 400 occurrences"),
    ("FREQ=DAILY;UNTIL=20280101T000000Z", "UTC", "runs past the horizon"),
    ("FREQ=YEARLY;COUNT=3", "UTC", "runs past the horizon"),
    ("FREQ=DAILY;UNTIL=20260101T000000Z", "UTC", "before deliverAt"),
    ("FREQ=DAILY;UNTIL=20260230T000000", "UTC", "not a real date"),
    ("FREQ=DAILY;UNTIL=20260601", "UTC", "must be a date-time"),
    ("FREQ=DAILY;UNTIL=00010101T000000Z", "America/New_York", "out of range"),
    ("FREQ=DAILY;UNTIL=99991231T235959Z", "Asia/Tokyo", "out of range"),
    ("FREQ=DAILY;UNTIL=99991231T235959", "UTC", "runs past the horizon"),
    ("DTSTART:20260101T090000Z\nRRULE:FREQ=DAILY;COUNT=2", "UTC", "DTSTART is not accepted"),
    ("FREQ=DAILY;COUNT=2;DTSTART=20260101T090000", "UTC", "DTSTART is not accepted"),
    ("FREQ=DAILY;COUNT=2\nEXDATE:20260601T090000Z", "UTC", "one RRULE value"),
    ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30;COUNT=3", "UTC", "never fires"),
    ("FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=4,6,9,11;COUNT=3", "UTC", "never fires"),
    ("FREQ=MONTHLY;BYDAY=4MO;BYMONTHDAY=1;COUNT=3", "UTC", "never fires"),
    ("FREQ=DAILY;INTERVAL=7;BYDAY=TU;COUNT=3", "UTC", "never fires"),  # deliverAt is a Monday
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;COUNT=2", "UTC", "never fires"),  # next Feb 29 is past the horizon
    ("FREQ=WEEKLY;INTERVAL=2;BYMONTH=13;COUNT=2", "UTC", "BYMONTH: 13 is out of range"),
    ("FREQ=WEEKLY;BYMONTHDAY=3;COUNT=2", "UTC", "not allowed with FREQ=WEEKLY"),
    ("FREQ=WEEKLY;BYDAY=1MO;COUNT=2", "UTC", "only allowed with MONTHLY or YEARLY"),
    ("FREQ=MONTHLY;BYDAY=6MO;COUNT=2", "UTC", "ordinal 6 is out of range"),
    ("FREQ=DAILY;BYDAY=XX;COUNT=2", "UTC", "not a weekday"),
    ("FREQ=DAILY;BYSECOND=0;COUNT=2", "UTC", "BYSECOND is not in the accepted subset"),
    ("FREQ=MONTHLY;BYSETPOS=-1;COUNT=2", "UTC", "BYSETPOS is not in the accepted subset"),
    ("FREQ=DAILY;COUNT=2;COUNT=3", "UTC", "COUNT is given twice"),
    ("FREQ=FORTNIGHTLY;COUNT=2", "UTC", "is not a frequency"),
    ("COUNT=2", "UTC", "FREQ is required"),
    ("FREQ=DAILY;INTERVAL=0;COUNT=2", "UTC", "INTERVAL: 0 is out of range"),
    ("FREQ=DAILY;INTERVAL=99999999999;COUNT=2", "UTC", "not a whole number"),
    ("FREQ=DAILY;BYHOUR=24;COUNT=2", "UTC", "BYHOUR: 24 is out of range"),
    ("FREQ=DAILY;COUNT=2,3", "UTC", "COUNT takes one number"),
    ("garbage", "UTC", "expected NAME=VALUE"),
    (";;;", "UTC", "expected NAME=VALUE"),
    ("", "UTC", "one RRULE value"),
    ("FREQ=DAILY;COUNT=2", "Mars/Olympus_Mons", "not an IANA time zone"),
    ("FREQ=DAILY;COUNT=2", "../../etc/passwd", "not an IANA time zone"),
    ("FREQ=DAILY;COUNT=2", "+01:00", "not an IANA time zone"),
]


@pytest.mark.parametrize(("rule", "zone", "problem"), HOSTILE, ids=[r[0][:40] + " " + r[1] for r in HOSTILE])
def test_a_hostile_rule_is_invalid_argument_naming_the_problem(rule, zone, problem):
    started = time.monotonic()
    with pytest.raises(InvalidArgument) as refused:
        recurrence.occurrences(rule, zone, datetime(2026, 3, 2, tzinfo=UTC))  # a Monday
    assert problem in refused.value.message
    field = "recurrence.timeZone" if "time zone" in problem else "recurrence.rrule"
    assert refused.value.message.startswith(f"{field}: ")
    assert refused.value.details == {"fields": [{"field": field, "problem": refused.value.message[len(field) + 2:]}]}
    # Never a search up to the year 9999 for a first instance (dateutil's way): well under a request's time.
    assert time.monotonic() - started < 2.0


# ------------------------------------------------------------ a series' next occurrence


def test_the_next_occurrence_skips_cancelled_ones_and_ends_with_the_last():
    a, b, c, d = (datetime(2026, 5, n, 9, tzinfo=UTC) for n in (1, 2, 3, 4))
    assert recurrence.next_occurrence([a, b, c, d], [], a) == b
    assert recurrence.next_occurrence([a, b, c, d], [b, c], a) == d
    assert recurrence.next_occurrence([a, b, c, d], [d], c) is None
    assert recurrence.next_occurrence([a, b, c, d], [], d) is None
    assert recurrence.upcoming([a, b, c, d], [c], b) == [b, d]


# ------------------------------------------------------------ any rule at all: a series, or invalid-argument


PARTS = st.sampled_from([
    "FREQ=DAILY", "FREQ=WEEKLY", "FREQ=MONTHLY", "FREQ=YEARLY", "FREQ=HOURLY", "FREQ=MINUTELY", "COUNT=1",
    "COUNT=7", "COUNT=400", "COUNT=401", "UNTIL=20260401T000000", "UNTIL=20260310T120000Z", "UNTIL=20270301T000000Z",
    "UNTIL=00010101T000000Z", "BYHOUR=0", "BYHOUR=9,17", "BYHOUR=1,2,3", "BYHOUR=2,3", "BYMINUTE=0", "BYMINUTE=30",
    "BYMINUTE=0,59", "BYMONTH=2", "BYMONTH=3,4", "BYMONTH=11", "BYMONTHDAY=1", "BYMONTHDAY=29", "BYMONTHDAY=30,31",
    "BYMONTHDAY=-1", "BYDAY=MO", "BYDAY=SA,SU", "BYDAY=1MO", "BYDAY=-1FR", "BYDAY=5SU", "BYDAY=2TU,-2TH",
    "INTERVAL=2", "INTERVAL=3", "INTERVAL=7", "INTERVAL=366", "BYSETPOS=1", "WKST=SU", "DTSTART=20260101T000000",
])


@hyp_settings(max_examples=300, deadline=None, database=None)
@given(parts=st.tuples(st.sampled_from(["FREQ=DAILY", "FREQ=WEEKLY", "FREQ=MONTHLY", "FREQ=YEARLY", "FREQ=HOURLY"]),
                       st.sampled_from(["COUNT=5", "COUNT=400", "UNTIL=20260601T000000", "UNTIL=20270101T000000Z"]),
                       st.lists(PARTS, max_size=4, unique=True)).map(lambda t: [t[0], t[1], *t[2]]),
       zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]),
       offset_minutes=st.integers(0, 60 * 24 * 40))
def test_any_rule_is_a_series_within_the_horizon_or_invalid_argument(parts, zone, offset_minutes):
    deliver_at = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=offset_minutes, seconds=offset_minutes % 7)
    started = time.monotonic()
    try:
        found = recurrence.occurrences(";".join(parts), zone, deliver_at)
    except InvalidArgument as refused:
        assert refused.message.startswith(("recurrence.rrule: ", "recurrence.timeZone: "))
        event("refused")
        return
    finally:
        assert time.monotonic() - started < 2.0
    assert found and found == sorted(found) and len(found) <= constants.RECURRENCE_MAX_OCCURRENCES
    assert found[0] >= deliver_at and found[-1] <= deliver_at + timedelta(days=constants.RECURRENCE_HORIZON_DAYS)
    assert all(b - a >= timedelta(hours=1) for a, b in zip(found, found[1:], strict=False))
    assert all(at.second == 0 and at.microsecond == 0 for at in found)
    event("a series")
