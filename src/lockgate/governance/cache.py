"""In-process TTL cache over a store lookup, with negative caching and request coalescing.

An entry lives ``ttl`` seconds (found or not found).  ``invalidate()`` drops
entries and bumps a generation number, so a lookup that was in flight when
the invalidation arrived does not put its (possibly stale) answer back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class TTLCache(Generic[T]):
    def __init__(self, loader: Callable[[str], Awaitable[T | None]], ttl: float, max_entries: int = 100_000) -> None:
        self.loader = loader
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, T | None]] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0

    async def get(self, ident: str) -> T | None:
        entry = self._entries.get(ident)
        if entry is not None and entry[0] > monotonic():
            self.hits += 1
            return entry[1]
        pending = self._inflight.get(ident)
        if pending is not None:
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[ident] = future
        generation = self._generation
        try:
            value = await self.loader(ident)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._inflight.pop(ident, None)
        if generation == self._generation:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # bounded memory under a flood of random keys
            self._entries[ident] = (monotonic() + self.ttl, value)
        future.set_result(value)
        return value

    def invalidate(self, ident: str | None = None) -> None:
        """Drop one entry, or every entry when ``ident`` is None."""
        self._generation += 1
        if ident is None:
            self._entries.clear()
        else:
            self._entries.pop(ident, None)

    def __len__(self) -> int:
        return len(self._entries)
