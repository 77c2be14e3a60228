"""Days in the UI's declared timezone (``general_settings.ui_timezone``, UTC by default), computed in SQL.

Spend rows store ``start_time`` as naive UTC.  A local day is a half-open UTC interval; within a range the
zone's UTC offset changes only at its transitions (daylight saving time), so the local date of a row is
``date(start_time + offset)`` with the offset of the segment the row falls in: a ``CASE`` over the (few)
segments of the range, the same expression on SQLite and PostgreSQL, exact to the microsecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Interval, case, cast, func, literal
from sqlalchemy.sql.elements import ColumnElement

from ...errors import BadRequest


def zone(name: str | None) -> tzinfo:
    """The IANA zone ``name`` (``UTC`` when empty); a clear 400 for an unknown name."""
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"unknown timezone {name!r} (an IANA name such as Europe/Paris)", param="tz") from None


def day_start(day: date, tz: tzinfo) -> datetime:
    """The UTC instant a local day begins (local midnight; a gap at midnight moves it to the first valid time)."""
    local = datetime(day.year, day.month, day.day, tzinfo=tz)
    moment = local.astimezone(UTC)
    if moment.astimezone(tz).date() != day:  # midnight fell in a gap: the day starts at its first valid minute
        moment = _first_instant_of(day, tz, moment)
    return moment


def _first_instant_of(day: date, tz: tzinfo, near: datetime) -> datetime:
    lo, hi = near - timedelta(hours=3), near + timedelta(hours=3)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).date() >= day:
            hi = mid
        else:
            lo = mid
    return hi


def day_range(first: date, last: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC covering the local days ``first`` .. ``last`` (inclusive)."""
    return day_start(first, tz), day_start(last + timedelta(days=1), tz)


def today(tz: tzinfo, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(tz).date()


@dataclass(frozen=True)
class Segment:
    """From ``start`` (UTC, inclusive) the zone's offset is ``offset`` seconds, until the next segment."""

    start: datetime
    offset: int


def segments(tz: tzinfo, start: datetime, end: datetime) -> list[Segment]:
    """The offset segments of ``[start, end)``: one per transition inside (found hourly, then bisected)."""
    def offset(at: datetime) -> int:
        delta = at.astimezone(tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    out = [Segment(start, offset(start))]
    step = timedelta(hours=1)
    at = start
    while at < end:
        nxt = min(at + step, end)
        if offset(nxt) != out[-1].offset:
            lo, hi = at, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if offset(mid) == out[-1].offset:
                    lo = mid
                else:
                    hi = mid
            out.append(Segment(hi.replace(microsecond=0), offset(hi)))
        at = nxt
    return out


def local_day(column: Any, dialect: str, tz: tzinfo, start: datetime, end: datetime) -> ColumnElement[Any]:
    """SQL: the local date (``YYYY-MM-DD``) of a naive-UTC time column, for rows in ``[start, end)``."""
    parts = segments(tz, start, end)

    def shifted(seconds: int) -> ColumnElement[Any]:
        if dialect == "postgresql":
            moment = column + cast(literal(f"{seconds} seconds"), Interval) if seconds else column
            return func.to_char(moment, "YYYY-MM-DD")
        return func.date(column, literal(f"{seconds:+d} seconds"))

    if len(parts) == 1:
        return shifted(parts[0].offset)
    whens = [(column < nxt.start.replace(tzinfo=None), shifted(seg.offset)) for seg, nxt in pairwise(parts)]
    return case(*whens, else_=shifted(parts[-1].offset))
