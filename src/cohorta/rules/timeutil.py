"""Time arithmetic shared by both compilers: local days, calendar periods, windows, anniversaries.

Every threshold is computed here, in Python, as a naive UTC datetime (for timestamp columns) or a ``date`` (for date
columns); both evaluators compare against the very same literals, so they cannot disagree about a boundary.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from .catalog import Catalog

UTC = dt.UTC
ONE_MICROSECOND = dt.timedelta(microseconds=1)
#: UTC offsets lie within +-26 h of each other, so a row this far below a ``last_days`` window's start never
#: re-enters it when the zone's clocks fall back; closer rows may, so whatever plans wake-ups must see them.
REENTRY_MARGIN = dt.timedelta(days=3)


@dataclass(frozen=True)
class Context:
    """What a rule is evaluated against: the instant, the time zone, the currency exponent and the catalog.

    ``as_of`` must be time-zone aware. ``timezone`` is the segment's zone (the project default unless the segment
    overrides it). Relative dates and calendar periods are computed from the local day of ``as_of`` in that zone.
    """

    as_of: dt.datetime
    timezone: str | ZoneInfo = "UTC"
    currency_exponent: int | None = 2
    catalog: Catalog = field(default_factory=Catalog)

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None or self.as_of.utcoffset() is None:
            raise ValueError("as_of must be a time-zone aware datetime")
        tz = self.timezone if isinstance(self.timezone, ZoneInfo) else ZoneInfo(self.timezone)
        object.__setattr__(self, "tz", tz)
        local = self.as_of.astimezone(tz)
        object.__setattr__(self, "local_now", local)
        object.__setattr__(self, "today", local.date())
        object.__setattr__(self, "as_of_utc", self.as_of.astimezone(UTC).replace(tzinfo=None))

    # set in __post_init__ (declared for type checkers)
    tz: ZoneInfo = field(init=False, repr=False, compare=False)
    local_now: dt.datetime = field(init=False, repr=False, compare=False)
    today: dt.date = field(init=False, repr=False, compare=False)
    as_of_utc: dt.datetime = field(init=False, repr=False, compare=False)

    def at(self, as_of: dt.datetime) -> Context:
        return Context(as_of, self.tz, self.currency_exponent, self.catalog)

    def day_start(self, day: dt.date) -> dt.datetime:
        """The first instant (naive UTC) of the local calendar day ``day``."""
        return dt.datetime.combine(day, dt.time(0), tzinfo=self.tz).astimezone(UTC).replace(tzinfo=None)

    def instant(self, value: dt.datetime) -> dt.datetime:
        """A rule datetime as naive UTC; a naive rule datetime is local wall time in the segment's zone."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.tz)
        return value.astimezone(UTC).replace(tzinfo=None)

    def utc_offset_seconds(self) -> int:
        """Offset of the zone at ``as_of`` (used for anniversaries of datetime fields)."""
        off = self.local_now.utcoffset()
        return int(off.total_seconds()) if off is not None else 0

    @property
    def end_exclusive(self) -> dt.datetime:
        """Activity after ``as_of`` is ignored: timestamps must be < this (naive UTC)."""
        return self.as_of_utc + ONE_MICROSECOND


def to_utc_naive(value: dt.datetime) -> dt.datetime:
    """Snapshot timestamps are naive UTC (as stored); aware ones are converted."""
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _add_months(day: dt.date, months: int) -> dt.date:
    m = day.month - 1 + months
    return dt.date(day.year + m // 12, m % 12 + 1, 1)


def calendar_period(name: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """First and last local day of ``this_month``, ``last_week``, ``next_quarter`` ... (weeks start on Monday)."""
    which, unit = name.split("_", 1)
    shift = {"this": 0, "last": -1, "next": 1}[which]
    if unit == "week":
        start = today - dt.timedelta(days=today.weekday()) + dt.timedelta(weeks=shift)
        return start, start + dt.timedelta(days=6)
    if unit == "month":
        start = _add_months(dt.date(today.year, today.month, 1), shift)
        return start, _add_months(start, 1) - dt.timedelta(days=1)
    if unit == "quarter":
        start = _add_months(_quarter_start(today), 3 * shift)
        return start, _add_months(start, 3) - dt.timedelta(days=1)
    if unit == "year":
        start = dt.date(today.year + shift, 1, 1)
        return start, dt.date(today.year + shift, 12, 31)
    raise ValueError(f"unknown calendar period {name!r}")


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def anniversary_keys(first: dt.date, last: dt.date) -> frozenset[int]:
    """``month * 100 + day`` of every day in [first, last]; in a non-leap year Feb 28 also stands for Feb 29."""
    keys: set[int] = set()
    if (last - first).days >= 366:
        last = first + dt.timedelta(days=366)
    day = first
    while day <= last:
        keys.add(day.month * 100 + day.day)
        if day.month == 2 and day.day == 28 and not _is_leap(day.year):
            keys.add(229)
        day += dt.timedelta(days=1)
    return frozenset(keys)


def month_day_key(value: dt.date | dt.datetime, offset_seconds: int | None) -> int:
    """The anniversary key of a stored value (a datetime is shifted by the zone's offset at ``as_of`` first)."""
    if isinstance(value, dt.datetime):
        value = to_utc_naive(value) + dt.timedelta(seconds=offset_seconds or 0)
    return value.month * 100 + value.day
