"""timestamptz as this service reads it: every value PostgreSQL holds (4714 BC to 294276 AD,
the infinities), those outside datetime's years 1-9999 as a Beyond, where psycopg2 would fail the
whole read on one odd value written by ZDM's agents."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg2.extensions
from psycopg2.extensions import connection, cursor

# The Gregorian calendar repeats every 400 years, weekdays included.
CYCLE_YEARS = 400
CYCLE = timedelta(days=146_097)
# PostgreSQL's ISO output (psycopg2 sets DateStyle ISO on connect): a year of 4 to 6 digits, an
# offset of hours[:minutes[:seconds]] (old dates carry a zone's local mean time), " BC" before 1.
ISO = re.compile(r"(\d{4,6})(-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?[+-]\d\d(?::\d\d){0,2})( BC)?")


class Beyond(datetime):
    """An instant datetime cannot hold: as a datetime the nearest it can (its first or last
    microsecond, UTC), so comparisons see the far past or future. The instant itself is near
    (the same wall time and offset) plus cycles 400-year cycles; near is None for infinities."""

    near: datetime | None
    cycles: int

    def _key(self) -> tuple[int, datetime | None, int]:
        return self.year, self.near, self.cycles

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Beyond) and self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        # The answer's validator hashes the snapshot's repr: two instants, two reprs.
        if self.near is None:
            return f"Beyond({'infinity' if self.future else '-infinity'})"
        return f"Beyond({self.near!r}, cycles={self.cycles})"

    @property
    def future(self) -> bool:
        return self.year == datetime.max.year


def beyond(near: datetime | None, cycles: int, future: bool) -> Beyond:
    edge = datetime.max if future else datetime.min
    value = Beyond.combine(edge.date(), edge.time(), UTC)
    value.near, value.cycles = near, cycles
    return value


INFINITY = beyond(None, 0, future=True)
MINUS_INFINITY = beyond(None, 0, future=False)


def cast(value: str | bytes | None, _cursor: cursor | None) -> datetime | None:
    """Read one timestamptz from PostgreSQL's text."""
    if value is None:
        return None
    text = value if isinstance(value, str) else value.decode()
    if text == "infinity":
        return INFINITY
    if text == "-infinity":
        return MINUS_INFINITY
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return far(text)


def far(text: str) -> Beyond:
    """An instant outside datetime's years, kept as its near twin and the cycles between."""
    match = ISO.fullmatch(text)
    if match is None:
        raise psycopg2.DataError(f"unreadable timestamptz: {text!r}")
    year_text, rest, bc = match.groups()
    year = 1 - int(year_text) if bc else int(year_text)  # 1 BC is year 0
    # Into years 400-799 or 8000-8399: clear of datetime's ends, and where a zone has the rules
    # of the instant's own year (its first offset before any change, its standing rule after).
    cycles = (year - (400 if year < 1 else 8000)) // CYCLE_YEARS
    near = datetime.fromisoformat(f"{year - cycles * CYCLE_YEARS:04d}{rest}")
    return beyond(near, cycles, future=year > 0)


def exact(moment: datetime) -> tuple[datetime, int] | None:
    """The instant as (a datetime, 400-year cycles to add to it); None for an infinity."""
    if isinstance(moment, Beyond):
        return None if moment.near is None else (moment.near, moment.cycles)
    return moment, 0


def duration(start: datetime, end: datetime) -> timedelta | None:
    """end - start, exact for any two finite instants; None if either is infinite."""
    a, b = exact(start), exact(end)
    if a is None or b is None:
        return None
    return b[0] - a[0] + (b[1] - a[1]) * CYCLE


# timestamptz and timestamptz[] by their type OIDs.
TIMESTAMPTZ = psycopg2.extensions.new_type((1184,), "ZDM_TIMESTAMPTZ", cast)
TIMESTAMPTZ_ARRAY = psycopg2.extensions.new_array_type((1185,), "ZDM_TIMESTAMPTZ[]", TIMESTAMPTZ)


def register(conn: connection) -> None:
    """Read timestamptz (and arrays of it) on this connection with cast()."""
    psycopg2.extensions.register_type(TIMESTAMPTZ, conn)
    psycopg2.extensions.register_type(TIMESTAMPTZ_ARRAY, conn)
