"""Budget periods: ``30s``, ``15m``, ``1h``, ``1d``, ``7d``, ``2w``, ``30d``, ``1mo`` and their schedule."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

_PATTERN = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|mo)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse(duration: str) -> tuple[int, str]:
    """``"30d"`` -> ``(30, "d")``; ValueError when the text is not a period."""
    match = _PATTERN.match(duration or "")
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {duration!r}: use a positive number followed by s, m, h, d, w or mo")
    return int(match.group(1)), match.group(2)


def is_valid(duration: str) -> bool:
    try:
        parse(duration)
    except ValueError:
        return False
    return True


def add(moment: datetime, duration: str, times: int = 1) -> datetime:
    """``moment`` plus ``times`` periods (months are calendar months, the day clamped to the month's end)."""
    count, unit = parse(duration)
    if unit != "mo":
        return moment + timedelta(seconds=_SECONDS[unit] * count * times)
    months = moment.month - 1 + count * times
    year, month = moment.year + months // 12, months % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def next_reset_after(reset_at: datetime, duration: str, now: datetime) -> datetime:
    """The first ``reset_at + k * period`` (k >= 1) that is later than ``now``: a reset that fell due
    during downtime keeps its schedule instead of drifting to the restart time."""
    count, unit = parse(duration)
    if unit != "mo":
        period = timedelta(seconds=_SECONDS[unit] * count)
        if now < reset_at:
            return reset_at + period
        periods = int((now - reset_at) // period) + 1
        return reset_at + period * periods
    k = 1
    candidate = add(reset_at, duration, k)
    while candidate <= now:
        k += 1
        candidate = add(reset_at, duration, k)  # from the anchor, so month-end days are not lost
    return candidate


def utcnow() -> datetime:
    return datetime.now(UTC)
