"""One JSON line per request, written in batches off the request path.

Lines are buffered and flushed together shortly after (or when the buffer is
large), so a request never waits on a write.  Only ids, names, numbers and
statuses are logged: never keys, credentials, headers or bodies.
"""

from __future__ import annotations

import asyncio
import sys
from typing import IO, Any

import orjson

FLUSH_DELAY = 0.2
MAX_BUFFERED = 256


class AccessLog:
    def __init__(self, stream: IO[bytes] | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self._stream = stream
        self._lines: list[bytes] = []
        self._scheduled = False

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._lines.append(orjson.dumps(record))
        if len(self._lines) >= MAX_BUFFERED:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._lines:
            return
        data = b"\n".join(self._lines) + b"\n"
        self._lines.clear()
        stream = self._stream or sys.stdout.buffer
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):
            pass
