"""Times as the embedded database stores them: SQLAlchemy's SQLite DATETIME text, naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(value: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC (naive values are taken as UTC), as ORM reads parse it."""
    if value.tzinfo is not None:
        if value.utcoffset():
            value = value.astimezone(UTC)
        return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"
    return value.isoformat(" ", "microseconds")


def parse_utc_text(text: str) -> datetime:
    """The naive UTC datetime of a ``utc_text`` string."""
    return datetime.fromisoformat(text)


class EpochText:
    """Epoch seconds -> ``utc_text``; the date-and-second part is formatted once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, epoch: float) -> str:
        second = int(epoch // 1)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")
            self._second = second
        micro = round((epoch - second) * 1_000_000)
        if micro >= 1_000_000:  # rounded up into the next second
            return utc_text(datetime.fromtimestamp(second + 1, UTC))
        return f"{self._prefix}.{micro:06d}"
