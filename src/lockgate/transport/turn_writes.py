"""Bytes written during one turn of the event loop, sent in one write at its end.

For connections that many requests in flight share (the Redis counters' connection, the workers'
counters service): at 32 connections several requests issue their command in the same turn, and one
``send`` instead of one each is fewer system calls on both sides.  A command waits at most until the
loop's current callbacks have run.
"""

from __future__ import annotations

import asyncio


class TurnWrites:
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None  # None: not connected, writes are dropped
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        if self.transport is not None:
            self.transport.write(data)
