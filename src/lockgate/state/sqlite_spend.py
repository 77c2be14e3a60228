"""Spend batches on the embedded SQLite database: plain ``sqlite3``, no SQLAlchemy on this path.

The batched spend writer is the only frequent writer of the embedded database.  Two paths write
the same rows the SQLAlchemy path (``SQLStore._apply_spend``, used by PostgreSQL) writes:

* **on the event loop** (the usual path, for the writer's fresh batches): one transaction on a
  connection of the loop thread, rows inserted ``LOOP_CHUNK`` at a time with a yield to the loop
  between chunks, then the batch's totals added to every level and COMMIT.  A row costs ~4-5 µs
  this way.  In a thread, interleaved with the loop on a busy core, the same insert cost ~21 µs of
  CPU per row (preempted at every wake-up of the loop, caches cold each time) and added ~20-40 µs
  to every request at one connection (docs/performance.md).  One row at a time right after each
  answer was tried too: ~10 µs a row (the answer's work evicts SQLite's pages in between).  The
  loop connection never waits for a lock (``busy_timeout`` 0) and never checkpoints the WAL
  inline (a thread does, about once a second), so it cannot stall the loop for long.
* **in a thread** (the fallback, and replay): a whole batch is one hop to a dedicated thread
  running one ``BEGIN IMMEDIATE`` transaction: existing ids looked up (a replay after a crash
  between apply and checkpoint; skipped for records the writer handed over in memory, which are
  new, unless the insert meets one after all), new rows inserted with one ``executemany``, then
  one ``UPDATE`` per entity that spent.  Taken for replayed batches and whenever the loop path
  cannot finish (the lock is held by another writer, an id is already stored, an error): the loop
  transaction is rolled back first, so a row is never written twice.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..governance.types import SpendRecord
from . import rollup
from .timetext import utc_text

COLUMNS = ("request_id", "api_key", "user_id", "team_id", "organization_id", "end_user", "model_group", "model",
           "deployment_id", "provider", "route", "prompt_tokens", "completion_tokens", "cached_tokens", "spend",
           "status", "start_time", "end_time", "metadata")
CHUNK = 500  # ids per lookup (SQLite's default limit of bound variables is far above)
INSERT = f"INSERT INTO spend_logs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
LOOP_CHUNK = 32  # rows inserted on the loop between two yields (~150 µs)
LOOP_BATCH_MAX = 2000  # larger batches (a burst after an outage) go to the thread
WAL_CHECKPOINT_EVERY = 1.0  # seconds between the thread's passive WAL checkpoints


BACKGROUND_NICE = 10


def _lower_priority() -> None:
    """Run this thread at nice 10: on a busy core the event loop keeps priority over batch writes
    (a woken writer otherwise preempts it for milliseconds: p99 +4 ms at one connection), while the
    writer still gets ~10% of a saturated core, several times what it needs."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: same priority as the loop
        pass


class SQLiteSpend:
    def __init__(self, path: Path | str, totals: Any, updated_at: dict[str, bool]) -> None:
        self.path = str(path)
        self.totals = totals  # SpendTotals.of(records): what to add where
        self.updated_at = updated_at  # table -> has an updated_at column
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="lockgate-sqlite-spend", initializer=_lower_priority)
        # the loop path
        self._loop_conn: sqlite3.Connection | None = None
        self._loop_busy = False  # a loop transaction is open (between its chunks)
        self._checkpoint_due = time.monotonic() + WAL_CHECKPOINT_EVERY
        self._checkpointing = False
        self.loop_rows = 0  # rows committed by the loop path (tests)

    async def apply(self, records: list[SpendRecord], fresh: bool = False) -> int:
        if fresh and not self._loop_busy and len(records) <= LOOP_BATCH_MAX:
            done = await self._apply_on_loop(records)
            if done is not None:
                return done
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._apply, records, fresh)

    def close(self) -> None:
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._thread.submit(shut).result()
        self._thread.shutdown()

    # -- the loop path
    async def _apply_on_loop(self, records: list[SpendRecord]) -> int | None:
        """The writer's fresh batch in one loop transaction; None: rolled back, use the thread."""
        self._loop_busy = True
        try:
            conn = self._loop_connection()
            rows = _unique(records)
            conn.execute("BEGIN IMMEDIATE")  # fails at once if another writer holds the lock
            for i in range(0, len(rows), LOOP_CHUNK):
                if i:
                    await asyncio.sleep(0)  # requests in flight go first
                conn.executemany(INSERT, rows[i:i + LOOP_CHUNK])  # a stored id raises IntegrityError
            _add_totals(conn, self.totals(rows), self.updated_at)
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            return None
        except BaseException:  # cancelled between chunks (shutdown): the journal keeps the records
            self._rollback()
            raise
        finally:
            self._loop_busy = False
        self.loop_rows += len(rows)
        self._maybe_checkpoint()
        return len(rows)

    def _rollback(self) -> None:
        conn = self._loop_conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _loop_connection(self) -> sqlite3.Connection:
        if self._loop_conn is None:
            # never waits for a lock on the loop; checkpoints run in the thread
            self._loop_conn = _open(self.path, busy_ms=0, autocheckpoint=False)
        return self._loop_conn

    def _maybe_checkpoint(self) -> None:
        """A passive WAL checkpoint in the thread about once a second (the loop connection never
        checkpoints: copying pages back and syncing would stall requests for milliseconds)."""
        now = time.monotonic()
        if self._checkpointing or now < self._checkpoint_due:
            return
        self._checkpointing = True
        self._checkpoint_due = now + WAL_CHECKPOINT_EVERY
        self._thread.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass  # the next one will do; the WAL only grows meanwhile
        finally:
            self._checkpointing = False

    # -- the thread path
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _open(self.path, busy_ms=10_000)
        return self._conn

    def _apply(self, records: list[SpendRecord], fresh: bool = False) -> int:
        rows = _unique(records)
        if fresh:
            try:
                return self._apply_rows(rows, False)
            except sqlite3.IntegrityError:  # an id was there after all: the checked path below
                pass
        return self._apply_rows(rows, True)

    def _apply_rows(self, rows: list[SpendRecord], check: bool) -> int:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: nobody inserts these ids meanwhile
        try:
            if check:  # a replay after a crash between apply and checkpoint: skip ids already stored
                ids = [row.request_id for row in rows]
                present: set[str] = set()
                for i in range(0, len(ids), CHUNK):
                    part = ids[i:i + CHUNK]
                    found = conn.execute(
                        f"SELECT request_id FROM spend_logs WHERE request_id IN ({', '.join('?' * len(part))})", part)
                    present.update(row[0] for row in found)
                if present:
                    rows = [row for row in rows if row[0] not in present]
            conn.executemany(INSERT, rows)  # unchecked: a stored id raises IntegrityError, rolled back
            _add_totals(conn, self.totals(rows), self.updated_at)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(rows)


def _open(path: str, busy_ms: int, autocheckpoint: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=busy_ms / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    conn.execute("PRAGMA synchronous=NORMAL")
    # appends touch only the right edge of each B-tree: a small page cache (default 2 MB)
    conn.execute("PRAGMA cache_size=-256")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def _unique(records: list[SpendRecord]) -> list[SpendRecord]:
    """The first record of each request id (a SpendRecord is the row, in column order)."""
    unique: dict[str, SpendRecord] = {}
    for record in records:
        unique.setdefault(record.request_id, record)
    return list(unique.values())


def _add_totals(conn: sqlite3.Connection, totals: Any, updated_at: dict[str, bool]) -> None:
    """A batch's spend added to every level, inside the caller's transaction."""
    now = utc_text(totals.now)
    for customer in totals.customers:  # end users are created on first spend, as LiteLLM does
        conn.execute("INSERT INTO customers (user_id, spend, models, metadata, blocked, created_at, updated_at) "
                     "VALUES (?, 0.0, '[]', '{}', 0, ?, ?) ON CONFLICT (user_id) DO NOTHING",
                     (customer, now, now))
    for table, pk, ident, amount in totals.entities:
        if updated_at.get(table):
            conn.execute(f"UPDATE {table} SET spend = spend + ?, updated_at = ? WHERE {pk} = ?",
                         (amount, now, ident))
        else:
            conn.execute(f"UPDATE {table} SET spend = spend + ? WHERE {pk} = ?", (amount, ident))
    for token_hash, model, amount in totals.key_models:
        conn.execute("INSERT INTO key_model_spend (token_hash, model, spend) VALUES (?, ?, ?) "
                     "ON CONFLICT (token_hash, model) DO UPDATE SET spend = spend + excluded.spend",
                     (token_hash, model, amount))
    if totals.total:
        conn.execute("UPDATE proxy_budget SET spend = spend + ?, updated_at = ? WHERE id = 1", (totals.total, now))
    if totals.buckets:
        conn.executemany(rollup.UPSERT_SQL, totals.buckets)
