"""Recurring messages: the RFC 5545 RRULE subset accepted, and a series' occurrences (pure).

A series is `pack427_sendMessage` with `deliverAt` and `recurrence: {rrule, timeZone}`. Its
occurrences are computed once, when it is accepted (`occurrences`), with python-dateutil's
`rrulestr` in the zone's local wall time (zoneinfo, with the tzdata package as its database): a
rule of 09:00 Europe/Berlin is 09:00 local on both sides of a daylight-saving change. The first
occurrence is the first instance of the rule at or after `deliverAt`; the rule's INTERVAL counts
from it (the week, month or year of deliverAt). Occurrences fall on whole minutes.

The subset accepted (anything else is InvalidArgument naming the problem):
- FREQ DAILY, WEEKLY, MONTHLY or YEARLY (SECONDLY, MINUTELY, HOURLY fire more than once an hour);
- INTERVAL (1 to 366); BYMONTH (1-12); BYMONTHDAY (1-31, -31 to -1; not with WEEKLY);
  BYDAY (MO..SU; with MONTHLY and YEARLY also an ordinal 1-5 or -5 to -1, as 2MO or -1FR);
  BYHOUR (0-23) and BYMINUTE (0-59), whose times of day must be at least an hour apart;
- COUNT (1 to RECURRENCE_MAX_OCCURRENCES) or UNTIL (a date-time, local wall time in the zone, or
  UTC with a final Z), exactly one of them: every series ends;
- no DTSTART (deliverAt is the start), no other property (RDATE, EXDATE, EXRULE), no BYSECOND,
  BYSETPOS, BYYEARDAY, BYWEEKNO, WKST.

The horizon: every occurrence within RECURRENCE_HORIZON_DAYS (365) after deliverAt, at most
RECURRENCE_MAX_OCCURRENCES (400) of them, and any two at least an hour apart as instants (a
daylight-saving change can bring two local times closer: such a rule is refused too).

A local time that does not exist on a day (the hour skipped when clocks go forward) is delivered
at the offset in force before the change (an hour later on the clock); an ambiguous one (the hour
repeated when clocks go back) at its first instance.

Unit-tested without the emulator (tests/unit/test_recurrence.py).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from dateutil.rrule import rrulestr  # type: ignore[import-untyped]  # python-dateutil ships no stubs

from .. import constants
from ..errors import InvalidArgument

FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
TOO_FREQUENT = ("SECONDLY", "MINUTELY", "HOURLY")
PARTS = ("FREQ", "INTERVAL", "BYMONTH", "BYMONTHDAY", "BYDAY", "BYHOUR", "BYMINUTE", "COUNT", "UNTIL")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
MAX_INTERVAL = 366
_BYDAY = re.compile(r"^([+-]?[1-9][0-9]?)?(MO|TU|WE|TH|FR|SA|SU)$")
_UNTIL = re.compile(r"^([0-9]{8})T([0-9]{6})(Z?)$")
RULE = "recurrence.rrule"
ZONE = "recurrence.timeZone"


def _bad(message: str, field: str = RULE) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", {"fields": [{"field": field, "problem": message}]})


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_of(name: str) -> ZoneInfo:
    """The IANA time zone `name` (e.g. Europe/Berlin); InvalidArgument (recurrence.timeZone) if there is none."""
    if name not in _zones():
        raise _bad(f"{name[:64]!r} is not an IANA time zone (e.g. Europe/Berlin)", ZONE)
    return ZoneInfo(name)


def _ints(name: str, value: str, low: int, high: int, *, nonzero: bool = False) -> list[int]:
    found = []
    for item in value.split(","):
        if not re.fullmatch(r"[+-]?[0-9]{1,4}", item):
            raise _bad(f"{name}={value[:40]}: {item[:10]!r} is not a whole number (at most 4 digits)")
        number = int(item)
        if not low <= number <= high or (nonzero and number == 0):
            raise _bad(f"{name}: {number} is out of range ({low} to {high}{', not 0' if nonzero else ''})")
        found.append(number)
    return found


def _parse(text: str) -> dict[str, str]:
    """The rule's parts, name to value, each checked against the subset (module docstring)."""
    body = text.strip()
    if "DTSTART" in body.upper():
        raise _bad("DTSTART is not accepted: the series starts at deliverAt (its first occurrence is the"
                   " rule's first instance at or after deliverAt)")
    if body.upper().startswith("RRULE:"):
        body = body[len("RRULE:"):]
    if not body or any(c in body for c in "\r\n:"):
        raise _bad("must be one RRULE value, e.g. FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;COUNT=10"
                   " (no other property: RDATE, EXDATE, EXRULE)")
    parts: dict[str, str] = {}
    for item in body.split(";"):
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or not name or not value:
            raise _bad(f"malformed part {item[:40]!r}: expected NAME=VALUE")
        if name in parts:
            raise _bad(f"{name} is given twice")
        if name not in PARTS:
            raise _bad(f"{name[:20]} is not in the accepted subset ({', '.join(PARTS)})")
        parts[name] = value.strip().upper()
    freq = parts.get("FREQ")
    if freq is None:
        raise _bad("FREQ is required (DAILY, WEEKLY, MONTHLY or YEARLY)")
    if freq in TOO_FREQUENT:
        raise _bad(f"FREQ={freq} fires more often than once an hour; use DAILY, WEEKLY, MONTHLY or YEARLY"
                   " (with BYHOUR for several times a day, at least an hour apart)")
    if freq not in FREQUENCIES:
        raise _bad(f"FREQ={freq[:20]} is not a frequency (DAILY, WEEKLY, MONTHLY or YEARLY)")
    if ("COUNT" in parts) == ("UNTIL" in parts):
        raise _bad("give exactly one of COUNT (at most"
                   f" {constants.RECURRENCE_MAX_OCCURRENCES}) and UNTIL (at most"
                   f" {constants.RECURRENCE_HORIZON_DAYS} days after deliverAt): every series ends, and"
                   " RFC 5545 forbids both")
    if freq == "WEEKLY" and "BYMONTHDAY" in parts:
        raise _bad("BYMONTHDAY is not allowed with FREQ=WEEKLY (RFC 5545)")
    return parts


def _byday(value: str, freq: str) -> list[tuple[int, int]]:
    """BYDAY as (ordinal or 0, weekday 0=MO)."""
    days = []
    for item in value.split(","):
        match = _BYDAY.match(item)
        if not match:
            raise _bad(f"BYDAY: {item[:10]!r} is not a weekday (MO..SU, optionally with an ordinal: 2MO, -1FR)")
        ordinal = int(match.group(1) or 0)
        if ordinal and freq not in ("MONTHLY", "YEARLY"):
            raise _bad(f"BYDAY: an ordinal ({item}) is only allowed with MONTHLY or YEARLY")
        if not -5 <= ordinal <= 5:
            raise _bad(f"BYDAY: ordinal {ordinal} is out of range (1 to 5, -5 to -1)")
        days.append((ordinal, WEEKDAYS.index(match.group(2))))
    return days


def _until(value: str, zone: ZoneInfo) -> datetime:
    """UNTIL as local wall time (naive): a UTC value (Z) is converted into the zone."""
    match = _UNTIL.match(value)
    if not match:
        raise _bad(f"UNTIL={value[:30]}: must be a date-time, YYYYMMDDTHHMMSS (local time in the zone) or"
                   " YYYYMMDDTHHMMSSZ (UTC)")
    try:
        at = datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S")
    except ValueError:
        raise _bad(f"UNTIL={value[:30]}: not a real date and time") from None
    if match.group(3):
        try:
            return at.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)
        except (OverflowError, ValueError):  # the first or last instants there are, in a zone beside UTC
            raise _bad(f"UNTIL={value[:30]}: out of range") from None
    return at


def _day_matches(day: date, start: date, freq: str, interval: int, months: list[int], monthdays: list[int],
                 weekdays: list[tuple[int, int]]) -> bool:
    """Whether the rule has occurrences on `day` (dateutil's defaults for parts not given)."""
    if freq == "DAILY" and (day - start).days % interval:
        return False
    if freq == "WEEKLY" and ((day - timedelta(days=day.weekday()) - (start - timedelta(days=start.weekday()))).days
                             // 7) % interval:
        return False
    if freq == "MONTHLY" and ((day.year - start.year) * 12 + day.month - start.month) % interval:
        return False
    if freq == "YEARLY" and (day.year - start.year) % interval:
        return False
    if not (monthdays or weekdays):  # dateutil's defaults: deliverAt's own day of the week, month or year
        if freq == "WEEKLY":
            weekdays = [(0, start.weekday())]
        elif freq == "MONTHLY":
            monthdays = [start.day]
        elif freq == "YEARLY":
            monthdays, months = [start.day], months or [start.month]
    if months and day.month not in months:
        return False
    length = calendar.monthrange(day.year, day.month)[1]
    if monthdays and day.day not in monthdays and day.day - length - 1 not in monthdays:
        return False
    if weekdays:
        in_month = freq == "MONTHLY" or (freq == "YEARLY" and months)
        if in_month:
            nth, nth_last = (day.day - 1) // 7 + 1, -((length - day.day) // 7 + 1)
        else:
            yday, ylen = day.timetuple().tm_yday, 366 if calendar.isleap(day.year) else 365
            nth, nth_last = (yday - 1) // 7 + 1, -((ylen - yday) // 7 + 1)
        if not any(wd == day.weekday() and (not n or n in (nth, nth_last)) for n, wd in weekdays):
            return False
    return True


def first_minute_at_or_after(at: datetime) -> datetime:
    """`at` if it is a whole minute, else the next whole minute (occurrences fall on whole minutes)."""
    whole = at.replace(second=0, microsecond=0)
    return whole if whole == at else whole + timedelta(minutes=1)


def occurrences(rrule: str, time_zone: str, deliver_at: datetime) -> list[datetime]:
    """Every occurrence of a series, as UTC instants, soonest first.

    Args:
        rrule: the RRULE value (the subset of the module docstring), optionally prefixed RRULE:.
        time_zone: the IANA zone whose local wall time the rule is in.
        deliver_at: the series' start (timezone-aware): the first occurrence is the rule's first
            instance at or after it.

    Raises:
        InvalidArgument: naming the problem (field recurrence.rrule or recurrence.timeZone): a
            malformed rule, a part outside the subset, a rule that never fires, fires more often
            than once an hour, or runs past the horizon (RECURRENCE_HORIZON_DAYS after deliverAt,
            RECURRENCE_MAX_OCCURRENCES occurrences).
    """
    zone = zone_of(time_zone)
    parts = _parse(rrule)
    freq = parts["FREQ"]
    interval = _ints("INTERVAL", parts["INTERVAL"], 1, MAX_INTERVAL)[0] if "INTERVAL" in parts else 1
    if "INTERVAL" in parts and len(parts["INTERVAL"].split(",")) > 1:
        raise _bad("INTERVAL takes one number")
    months = _ints("BYMONTH", parts["BYMONTH"], 1, 12) if "BYMONTH" in parts else []
    monthdays = _ints("BYMONTHDAY", parts["BYMONTHDAY"], -31, 31, nonzero=True) if "BYMONTHDAY" in parts else []
    weekdays = _byday(parts["BYDAY"], freq) if "BYDAY" in parts else []
    if "COUNT" in parts and len(_ints("COUNT", parts["COUNT"], 1, constants.RECURRENCE_MAX_OCCURRENCES)) > 1:
        raise _bad("COUNT takes one number")
    start = first_minute_at_or_after(deliver_at.astimezone(zone)).replace(tzinfo=None)
    hours = _ints("BYHOUR", parts["BYHOUR"], 0, 23) if "BYHOUR" in parts else [start.hour]
    minutes = _ints("BYMINUTE", parts["BYMINUTE"], 0, 59) if "BYMINUTE" in parts else [start.minute]
    times = sorted({h * 60 + m for h in hours for m in minutes})
    gaps = [b - a for a, b in zip(times, [*times[1:], times[0] + 24 * 60], strict=True)] if len(times) > 1 else []
    if gaps and min(gaps) < 60:
        raise _bad(f"BYHOUR/BYMINUTE: times of day {min(gaps)} minutes apart; a series fires at most once an hour")
    horizon = deliver_at + timedelta(days=constants.RECURRENCE_HORIZON_DAYS)
    horizon_local = horizon.astimezone(zone).replace(tzinfo=None)
    until = None
    if "UNTIL" in parts:
        until = _until(parts["UNTIL"], zone)
        if until < start:
            raise _bad(f"UNTIL={parts['UNTIL']} is before deliverAt: the rule never fires")
        if until > horizon_local:
            raise _bad(f"UNTIL={parts['UNTIL']} runs past the horizon: at most"
                       f" {constants.RECURRENCE_HORIZON_DAYS} days after deliverAt")
    # Whether it fires at all within the horizon, day by day (dateutil would look for a first
    # instance up to the year 9999 before saying there is none: seconds of a request's time).
    last = min(until or horizon_local, horizon_local)
    first_time = min((t for t in times if t >= start.hour * 60 + start.minute), default=None)
    day, fires = start.date(), False
    while day <= last.date() and not fires:
        if _day_matches(day, start.date(), freq, interval, months, monthdays, weekdays):
            fires = day > start.date() or first_time is not None
        day += timedelta(days=1)
    if not fires:
        raise _bad(f"never fires within the horizon ({constants.RECURRENCE_HORIZON_DAYS} days after deliverAt"
                   f"{', before UNTIL' if until else ''}): check BYMONTH, BYMONTHDAY and BYDAY")
    body = ";".join(f"{name}={value}" for name, value in parts.items() if name != "UNTIL")
    if until is not None:
        body += f";UNTIL={until:%Y%m%dT%H%M%S}"
    try:
        rule = rrulestr(body, dtstart=start)
    except (ValueError, TypeError, OverflowError) as err:
        raise _bad(f"malformed: {str(err)[:120]}") from None
    found: list[datetime] = []
    try:
        for local in rule:
            at = local.replace(tzinfo=zone).astimezone(UTC)
            if at > horizon:
                raise _bad(f"runs past the horizon: an occurrence on {local:%Y-%m-%d %H:%M} {time_zone}, more than"
                           f" {constants.RECURRENCE_HORIZON_DAYS} days after deliverAt")
            if len(found) == constants.RECURRENCE_MAX_OCCURRENCES:
                raise _bad(f"more than {constants.RECURRENCE_MAX_OCCURRENCES} occurrences")
            if found and at - found[-1] < timedelta(hours=1):
                raise _bad(f"occurrences at {found[-1].astimezone(zone):%Y-%m-%d %H:%M} and {local:%H:%M}"
                           f" {time_zone} are less than an hour apart (a daylight-saving change); a series"
                           " fires at most once an hour")
            if at >= deliver_at:
                found.append(at)
    except (ValueError, OverflowError) as err:
        raise _bad(f"malformed: {str(err)[:120]}") from None
    if not found:
        raise _bad("never fires at or after deliverAt")
    return found


def next_occurrence(occurrences: list[datetime], cancelled: list[datetime], after: datetime) -> datetime | None:
    """A series' first occurrence after `after` that was not cancelled (None: the series is done).

    Args:
        occurrences: all of the series' occurrences, soonest first (as `occurrences` computed them).
        cancelled: the occurrences cancelled one by one.
        after: the occurrence just delivered or cancelled.
    """
    skip = set(cancelled)
    return next((at for at in occurrences if at > after and at not in skip), None)


def upcoming(occurrences: list[datetime], cancelled: list[datetime], due: datetime) -> list[datetime]:
    """A series' occurrences still to be delivered: `due` (the next) and those after it, cancelled ones left out.

    Args:
        occurrences: all of the series' occurrences, soonest first.
        cancelled: the occurrences cancelled one by one.
        due: the occurrence due next (the series' deliverAt).
    """
    skip = set(cancelled)
    return [at for at in occurrences if at >= due and at not in skip]
