"""In-process TTL cache over a store lookup, with negative caching and request coalescing.

An entry is fresh for ``ttl`` seconds (found or not found).  For ``grace`` seconds after that it is
still answered while one background lookup refreshes it, so a busy key never makes its requests wait
for the database; older entries are looked up while the caller waits.  ``invalidate()`` drops entries
and bumps a generation number, so a lookup that was in flight when the invalidation arrived does not
put its (possibly stale) answer back: a dropped entry is looked up again, never answered stale.

Memory is bounded by two least-recently-used tables: found entries (``max_entries``) and not-found
entries (``max_misses``).  A miss never evicts a found entry, so a flood of random keys only pushes out
other misses, never the valid keys in use; past its bound a table drops its least recently used entry.
Recency is counted at the lookups (first load, and the refresh a used entry gets every ``ttl``), not at
every hit: a fresh hit costs one dict lookup, as it did before the bound was an LRU.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("lockgate.governance")


class TTLCache(Generic[T]):
    def __init__(self, loader: Callable[[str], Awaitable[T | None]], ttl: float, max_entries: int = 100_000,
                 grace: float | None = None, max_misses: int = 10_000) -> None:
        self.loader = loader
        self.ttl = ttl
        self.grace = ttl if grace is None else grace
        self.max_entries = max_entries
        self.max_misses = max_misses
        # ident -> (fresh until, value), least recently used first: found entries, and not-found ones apart
        self._entries: OrderedDict[str, tuple[float, T | None]] = OrderedDict()
        self._misses: OrderedDict[str, tuple[float, T | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()  # background refreshes (kept referenced)
        self._generation = 0
        self.hits = 0
        self.misses = 0

    async def get(self, ident: str) -> T | None:
        try:  # "[]": an OrderedDict's ``get`` costs twice as much, and this is the hot path
            entry: tuple[float, T | None] | None = self._entries[ident]
        except KeyError:
            entry = self._misses.get(ident)
        if entry is not None:
            now = monotonic()
            if entry[0] > now:
                self.hits += 1
                return entry[1]
            if entry[0] + self.grace > now:  # stale: answered while one refresh runs in the background
                self.hits += 1
                if ident not in self._inflight:
                    task = asyncio.get_running_loop().create_task(self._refresh(ident, *self._start(ident)))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                return entry[1]
        pending = self._inflight.get(ident)
        if pending is not None:
            return await asyncio.shield(pending)
        self.misses += 1
        return await self._load(ident, *self._start(ident))

    def peek(self, ident: str) -> T | None:
        """The cached value (fresh or not) without a lookup; None when absent or cached as not found."""
        entry = self._entries.get(ident)
        return entry[1] if entry is not None else None

    def _start(self, ident: str) -> tuple[asyncio.Future[Any], int]:
        """Mark a lookup of ``ident`` in flight (before it runs: later callers join it); an invalidation
        from now on discards its answer."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[ident] = future
        return future, self._generation

    async def _load(self, ident: str, future: asyncio.Future[Any], generation: int) -> T | None:
        try:
            value = await self.loader(ident)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            if self._inflight.get(ident) is future:  # not a newer lookup started after an invalidation
                del self._inflight[ident]
        if generation == self._generation:
            self._store(ident, (monotonic() + self.ttl, value))
        future.set_result(value)
        return value

    def _store(self, ident: str, entry: tuple[float, T | None]) -> None:
        """Into the table of its kind (out of the other one), most recently used; the bound evicts the
        least recently used entry of that table only."""
        if entry[1] is None:
            self._entries.pop(ident, None)
            table, bound = self._misses, self.max_misses
        else:
            self._misses.pop(ident, None)
            table, bound = self._entries, self.max_entries
        table[ident] = entry
        table.move_to_end(ident)
        while len(table) > bound:
            table.popitem(last=False)

    async def _refresh(self, ident: str, future: asyncio.Future[Any], generation: int) -> None:
        try:
            await self._load(ident, future, generation)
        except Exception as exc:  # noqa: BLE001 - the stale entry serves until its grace ends, then callers wait
            log.warning("refreshing a cached entry failed (%s)", type(exc).__name__)

    def invalidate(self, ident: str | None = None) -> None:
        """Drop one entry, or every entry when ``ident`` is None."""
        self._generation += 1
        if ident is None:
            self._entries.clear()
            self._misses.clear()
            self._inflight.clear()  # lookups in flight may have read the old state: nobody joins them
        else:
            self._entries.pop(ident, None)
            self._misses.pop(ident, None)
            self._inflight.pop(ident, None)

    def __len__(self) -> int:
        return len(self._entries) + len(self._misses)
