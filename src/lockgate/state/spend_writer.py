"""The batched spend writer: journal -> ``store.apply_spend(batch)``, off the request path.

It reads what the journal holds past its checkpoint (the journal is the queue:
memory stays bounded during a database outage), applies it in batches every
``interval`` seconds (sooner once ``batch_size`` records are waiting), then
advances the checkpoint.  ``apply_spend`` ignores request ids it already has,
so re-applying after a crash between apply and checkpoint never double counts.
A failing database only delays writes: retried with exponential backoff (up to
``max_backoff`` seconds) while the journal keeps growing; once it exceeds
``rotate_bytes`` and all of it but a small tail (records that arrived while the
last batch was written) is applied, it is rotated: truncated, or replaced by a
new file holding the tail (``Journal.rotate``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from .journal import Journal, open_journal, orphans

log = logging.getLogger("lockgate.spend")


class SpendWriter:
    def __init__(
        self,
        store: Any,
        directory: Path,
        *,
        interval: float = 0.1,
        batch_size: int = 500,
        rotate_bytes: int = 1 << 20,
        max_backoff: float = 10.0,
    ) -> None:
        self.store = store
        self.directory = directory
        self.interval = interval
        self.batch_size = batch_size
        self.rotate_bytes = rotate_bytes
        self.max_backoff = max_backoff
        self.journal: Journal = open_journal(directory)
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None  # set while the writer waits for records
        self._idle = False  # the writer waits with everything applied: the next record wakes it
        self._pending_count = 0
        # Records appended since the checkpoint, kept in memory so a flush needs no re-read and
        # re-decode of the journal; dropped (the journal file is read instead) past ``memory_limit``
        # records, so memory stays bounded during a database outage.
        self.memory_limit = 20_000
        # invariant: when not None, ``_memory`` holds exactly the records in [_memory_start, journal.size)
        self._memory: list[Any] | None = []
        self._memory_start = self.journal.size
        self.applied_total = 0
        self.failures = 0

    # -- start-up: replay what earlier (crashed) processes left
    async def replay(self) -> int:
        total = await self._drain(self.journal)
        for orphan in orphans(self.directory, self.journal.index):
            try:
                total += await self._drain(orphan)
                orphan.rotate(0)
            finally:
                orphan.close()
        if total:
            log.info("spend journal: replayed %d record(s) not yet in the database", total)
        return total

    async def _drain(self, journal: Journal) -> int:
        total = 0
        while True:
            records, end = journal.pending()
            if not records:
                if end > journal.applied:
                    journal.checkpoint(end)
                return total
            for i in range(0, len(records), self.batch_size):
                total += await self.store.apply_spend(records[i : i + self.batch_size])
            journal.checkpoint(end)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lockgate-spend-writer")

    # -- hot path
    def append(self, record: Any) -> None:
        self.journal.append(record)
        memory = self._memory
        if memory is not None:
            if len(memory) < self.memory_limit:
                memory.append(record)
            else:
                self._memory = None
        self._pending_count += 1
        if self._waiter is not None and (self._idle or self._pending_count >= self.batch_size):
            _wake(self._waiter)  # the first record wakes an idle writer; a full batch, a gathering one

    # -- background
    async def _run(self) -> None:
        """Idle (everything applied): no timer, the next record wakes it.  Then up to ``interval``
        gathering a batch (less once ``batch_size`` records wait), and one flush."""
        backoff = self.interval
        while True:
            if self.journal.applied >= self.journal.size:
                await self._wait(None)
            if self._pending_count < self.batch_size:
                await self._wait(self.interval)
            try:
                await self.flush_once()
                backoff = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a database outage only delays writes
                self.failures += 1
                backoff = min(backoff * 2, self.max_backoff)
                log.warning("spend writer: database write failed (%s); retrying in %.1f s", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)

    async def _wait(self, timeout: float | None) -> None:
        """Until ``timeout`` (gathering a batch: only a full one ends it sooner) or, with None (idle:
        everything applied), until the next record."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._idle = timeout is None
        timer = loop.call_later(timeout, _wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            self._idle = False
            if timer is not None:
                timer.cancel()

    async def flush_once(self) -> int:
        """Apply everything journaled so far (in batches); returns records applied.  Records that
        arrive meanwhile wait for the next batch (applying them at once would make batches of a few
        records, each with a transaction's fixed cost)."""
        done = 0
        target = self.journal.size
        while self.journal.applied < target:
            records, end, fresh = self._take()
            if not records:
                break
            for i in range(0, len(records), self.batch_size):
                await self.store.apply_spend(records[i : i + self.batch_size], fresh)
            self.journal.checkpoint(end)
            done += len(records)
        self._pending_count = max(0, self._pending_count - done)
        self.applied_total += done
        dropped = self.journal.rotate(self.rotate_bytes)
        if dropped is not None:  # the records in memory (the tail) now start that much earlier
            self._memory_start = max(0, self._memory_start - dropped)
        return done

    def _take(self) -> tuple[list[Any], int, bool]:
        """What to apply next: the in-memory records when they cover the journal (fresh: taken
        once, never applied before), else its file (maybe applied already: a retry)."""
        journal = self.journal
        memory = self._memory
        if memory is not None and self._memory_start == journal.applied:
            self._memory, self._memory_start = [], journal.size
            return memory, journal.size, True
        records, end = journal.pending()
        if end >= journal.size:  # caught up with the file: memory takes over again
            self._memory, self._memory_start = [], journal.size
        return records, end, False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        try:
            await asyncio.wait_for(self.flush_once(), 5)
        except Exception as exc:  # noqa: BLE001 - kept in the journal, replayed at next start
            log.warning("spend writer: final flush failed (%s); records stay in the journal", type(exc).__name__)
        self.journal.close()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
