"""The data pages' query parameters: dates in the declared timezone, ranges, page sizes (a 400 naming the
parameter for anything else)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from ...errors import BadRequest
from . import zones


def timezone_of(gw: Any) -> tzinfo:
    return zones.zone(getattr(gw.settings, "ui_timezone", "UTC"))


def day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date (YYYY-MM-DD)", param=name) from None


def day_range(start: str, end: str, tz: tzinfo, default_days: int = 30) -> tuple[date, date]:
    """``start`` .. ``end`` (inclusive, local days); by default the last ``default_days`` days up to today."""
    last = day(end, "end") or zones.today(tz)
    first = day(start, "start") or last - timedelta(days=default_days - 1)
    return first, last


def moment(value: str, name: str, tz: tzinfo, end: bool = False) -> datetime | None:
    """A local date (an end date includes its whole day) or a local date and time, as UTC."""
    if not value:
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return zones.day_start(d + timedelta(days=1) if end else d, tz)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date (YYYY-MM-DD) or a date and time", param=name) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).astimezone(UTC)


def local(value: datetime | None, tz: tzinfo) -> str:
    """A UTC time as the pages show it: local, to the second."""
    if value is None:
        return ""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
