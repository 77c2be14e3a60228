"""Spend batches on the embedded SQLite database: plain ``sqlite3``, no SQLAlchemy on this path.

The batched spend writer is the only frequent writer of the embedded database.  Three paths write
the same rows the SQLAlchemy path (``SQLStore._apply_spend``, used by PostgreSQL) writes:

* **in idle time** (the usual path, for the writer's fresh batches): a thread running as
  ``SCHED_IDLE`` writes ``BACKGROUND_ROWS`` rows per transaction.  The kernel runs it only when
  the event loop waits (on a provider, on the next request) and takes the core back the moment
  the loop wakes; the loop then waits for the GIL at most until the thread's next SQLite call (it
  releases the GIL for every row it steps).  On the loop the same rows stalled it for ~150 µs a
  chunk, twice or more per batch: that stall was the p99 at one connection (docs/performance.md).
* **on the event loop** (when the core has no idle time): a saturated core leaves an idle thread
  almost nothing (~0.3 %), so a loop thread busy ``LOOP_BUSY`` of the time since the last batch, or
  an idle-time transaction that took longer than ``BACKGROUND_LATE``, sends the writer's batches to
  the loop until ``PINGS_ON_TIME`` pings in a row reach the thread within ``PING_LATE`` (the first
  idle-time transaction then carries ``PROBE_ROWS``).  On the loop: one transaction, rows inserted
  ``LOOP_CHUNK`` at a time with a yield between chunks, then the totals and COMMIT (~4-5 µs a
  row; in a thread interleaved with a busy loop the same rows cost five times the CPU).  The
  loop connection never waits for a lock (``busy_timeout`` 0) and never checkpoints the WAL.
* **in a thread, checked** (the fallback, and replay): one ``BEGIN IMMEDIATE`` transaction: ids
  already stored looked up (a replay after a crash between apply and checkpoint), new rows
  inserted with one ``executemany``, then one ``UPDATE`` per entity that spent.  Taken for
  replayed batches and whenever a faster path cannot finish (the lock is held by another writer,
  an id is already stored, an error): the faster path's transaction is rolled back first, so a
  row is never written twice.  The same idle-time thread runs it, and checkpoints the WAL about
  once a second; while it is starved, a thread at the normal priority checkpoints instead (the
  idle thread would copy back all the WAL written during the load at once, after it).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable
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
BACKGROUND_ROWS = 64  # rows per idle-time transaction
BACKGROUND_LATE = 0.05  # s: an idle-time transaction this slow means the core has no idle time...
LOOP_BUSY = 0.95  # ...as does a loop thread that used this share of the time since the last batch in CPU
PING_LATE = 0.002  # s: ...until PINGS_ON_TIME pings in a row (one sent with each loop batch) ran on
PINGS_ON_TIME = 3  # the thread within PING_LATE (a saturated core runs one on time now and then)
PROBE_ROWS = 8  # rows of the first idle-time transaction after that (starved: a short hold of the lock)
LOOP_CHUNK = 32  # rows inserted on the loop between two yields (~150 µs)
LOOP_BATCH_MAX = 2000  # larger batches (a burst after an outage) go to the thread
WAL_CHECKPOINT_EVERY = 1.0  # seconds between the thread's passive WAL checkpoints
BACKGROUND_NICE = 19  # where SCHED_IDLE is missing (not Linux)


def _idle_priority() -> None:
    """Run this thread only in the core's idle time (``SCHED_IDLE``; no privilege needed): a
    request that wakes the loop preempts it at once.  Elsewhere: nice 19."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):  # not allowed: the loop's priority
        pass


class SQLiteSpend:
    def __init__(self, path: Path | str, totals: Any, updated_at: dict[str, bool]) -> None:
        self.path = str(path)
        self.totals = totals  # SpendTotals.of(records): what to add where
        self.updated_at = updated_at  # table -> has an updated_at column
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="lockgate-sqlite-spend", initializer=_idle_priority)
        self.starved = False  # no idle time (a busy loop, a late transaction): fresh batches go to the loop
        self._probing = False  # the next idle-time transaction is the first after starving
        self._ping: list[float] = []  # [sent] or [sent, ran] (monotonic) of the ping in flight
        self._pings_on_time = 0
        self._window: tuple[float, float] | None = None  # at the last batch: (wall, loop thread's CPU)
        # the loop path
        self._loop_conn: sqlite3.Connection | None = None
        self._loop_busy = False  # a loop transaction is open (between its chunks)
        self._checkpoint_due = time.monotonic() + WAL_CHECKPOINT_EVERY
        self._checkpointing = False
        self._checkpointer: ThreadPoolExecutor | None = None  # checkpoints while the idle thread is starved
        self._ckpt_conn: sqlite3.Connection | None = None
        self.loop_rows = 0  # rows committed by the loop path (tests)
        self.background_rows = 0  # rows committed in idle time

    async def apply(self, records: list[SpendRecord], fresh: bool = False) -> int:
        """``fresh``: the writer's own batch, never applied before (module docstring: the paths)."""
        loop = asyncio.get_running_loop()
        done = 0
        if fresh and not self.starved:
            self.starved = self._loop_busy_share() >= LOOP_BUSY  # no idle time: don't start a starved one
        if fresh and self.starved:
            self._check_ping()
        while fresh and records and not self.starved:
            size = PROBE_ROWS if self._probing else BACKGROUND_ROWS
            part, records = records[:size], records[size:]
            written, seconds = await loop.run_in_executor(self._thread, self._apply_timed, part)
            done += written
            self.starved = seconds > BACKGROUND_LATE  # no idle time: the loop writes until a ping is on time
            self._probing = False
            self._maybe_checkpoint()
        if not records:
            return done
        if fresh and not self._loop_busy and len(records) <= LOOP_BATCH_MAX:
            written_on_loop = await self._apply_on_loop(records)
            if written_on_loop is not None:
                return done + written_on_loop
        return done + await loop.run_in_executor(self._thread, self._apply, records, fresh)

    def _loop_busy_share(self) -> float:
        """The share of the wall time since the last batch the loop's thread (this one) ran."""
        now, cpu = time.monotonic(), time.thread_time()
        if self._window is None:  # the first batch
            self._window = (now, cpu)
            return 0.0
        began, began_cpu = self._window
        if now - began < 0.005:
            return 0.0  # too short to tell (the same flush's next batch)
        self._window = (now, cpu)
        return (cpu - began_cpu) / (now - began)

    def _check_ping(self) -> None:
        """While starved, each batch checks the ping in flight (the thread notes when it ran it) and
        sends the next: ``PINGS_ON_TIME`` in a row that ran within ``PING_LATE`` mean idle time is back."""
        ping = self._ping
        if len(ping) == 1:
            return  # not run yet
        if ping:
            self._pings_on_time = self._pings_on_time + 1 if ping[1] - ping[0] <= PING_LATE else 0
        if self._pings_on_time >= PINGS_ON_TIME:
            self.starved, self._probing = False, True
            self._ping, self._pings_on_time = [], 0
            return
        self._ping = ping = [time.monotonic()]
        self._thread.submit(lambda: ping.append(time.monotonic()))

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
        if self._checkpointer is not None:
            self._checkpointer.shutdown()  # waits for a checkpoint in progress
            self._checkpointer = None
        if self._ckpt_conn is not None:
            self._ckpt_conn.close()
            self._ckpt_conn = None

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
        """A passive WAL checkpoint off the loop about once a second (the loop connection never
        checkpoints: copying pages back and syncing would stall requests for milliseconds)."""
        now = time.monotonic()
        if self._checkpointing or now < self._checkpoint_due:
            return
        self._checkpointing = True
        self._checkpoint_due = now + WAL_CHECKPOINT_EVERY
        if self.starved:
            # the idle thread would run it only once the load is over, with all the WAL written meanwhile
            if self._checkpointer is None:
                self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="lockgate-sqlite-checkpoint")
            self._checkpointer.submit(self._checkpoint, self._checkpoint_connection)
        else:
            self._thread.submit(self._checkpoint, self._connect)

    def _checkpoint_connection(self) -> sqlite3.Connection:
        if self._ckpt_conn is None:
            self._ckpt_conn = _open(self.path, busy_ms=0, autocheckpoint=False)
        return self._ckpt_conn

    def _checkpoint(self, connection: Callable[[], sqlite3.Connection]) -> None:
        try:
            connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass  # the next one will do; the WAL only grows meanwhile
        finally:
            self._checkpointing = False

    # -- the thread paths
    def _apply_timed(self, records: list[SpendRecord]) -> tuple[int, float]:
        """An idle-time transaction, and how long it took (starved: the core has no idle time)."""
        started = time.monotonic()
        written = self._apply(records, True)
        self.background_rows += written
        return written, time.monotonic() - started

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
