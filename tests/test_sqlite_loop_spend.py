"""The embedded SQLite's spend batches (state/sqlite_spend.py), on a real file: the writer's fresh
batches are written in idle time by a SCHED_IDLE thread, on the event loop in chunks when the core
has no idle time (a real busy process beside the thread), and every way either can fail falls back
to the checked thread path with each record counted once."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from lockgate.state import open_store, sqlite_spend
from lockgate.state.spend_writer import SpendWriter
from tests.test_store import record, seed, settings


@pytest.fixture
async def store(tmp_path):
    st = await open_store(settings(f"sqlite:///{tmp_path / 'lockgate.db'}"), tmp_path)
    await seed(st)
    try:
        yield st
    finally:
        await st.close()


@pytest.fixture
def thread_applies(store, monkeypatch):
    """Batches that went through the thread path."""
    calls: list[int] = []
    original = store._sqlite_spend._apply

    def counting(records, fresh=False):
        calls.append(len(records))
        return original(records, fresh)

    monkeypatch.setattr(store._sqlite_spend, "_apply", counting)
    return calls


def rows_in(path) -> int:  # noqa: ANN001
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM spend_logs").fetchone()[0]
    finally:
        conn.close()


async def key_spend(store) -> float:  # noqa: ANN001
    return (await store.principal_for_key("k" * 64)).key.limits.spend


def in_thread(spend, fn, *args):
    """Run ``fn`` on the spend thread itself."""
    return asyncio.get_running_loop().run_in_executor(spend._thread, fn, *args)


@pytest.fixture
def on_the_loop(store, monkeypatch):
    """The core has no idle time, and keeps none: fresh batches go to the loop."""
    store._sqlite_spend.starved = True
    monkeypatch.setattr(sqlite_spend, "PINGS_ON_TIME", math.inf)


async def test_the_writers_batches_are_written_in_idle_time(store, tmp_path, thread_applies, monkeypatch):
    monkeypatch.setattr(sqlite_spend, "BACKGROUND_ROWS", 4)
    spend = store._sqlite_spend
    writer = SpendWriter(store, tmp_path / "journal", interval=60)
    for i in range(10):
        writer.append(record(i, spend=0.5))
    assert await writer.flush_once() == 10
    assert thread_applies == [4, 4, 2]  # one transaction per BACKGROUND_ROWS rows
    assert spend.background_rows == 10 and spend.loop_rows == 0 and not spend.starved
    assert await in_thread(spend, os.sched_getscheduler, 0) == os.SCHED_IDLE  # runs only when the core idles
    assert rows_in(tmp_path / "lockgate.db") == 10
    assert await key_spend(store) == pytest.approx(5.0)
    assert (await store.proxy_budget()).spend == pytest.approx(5.0)
    assert writer.journal.applied == writer.journal.size
    writer.journal.close()


async def test_a_core_without_idle_time_sends_the_batches_to_the_loop_until_it_idles_again(store, tmp_path):
    spend = store._sqlite_spend
    cpu = min(os.sched_getaffinity(0))
    await in_thread(spend, os.sched_setaffinity, 0, {cpu})  # the spend thread on one core...
    hog = subprocess.Popen([sys.executable, "-c", "print('spinning', flush=True)\nwhile True: pass"],
                           stdout=subprocess.PIPE, text=True)
    try:
        os.sched_setaffinity(hog.pid, {cpu})  # ...with a busy process on it: no idle time left
        assert hog.stdout.readline().strip() == "spinning"
        # the first transaction may still run on the lag credit the kernel gives a woken thread
        sent = 0
        while not spend.starved and sent < 3000:
            started = time.monotonic()
            rows = [record(f"s{sent + i}", spend=0.01) for i in range(50)]
            assert await store.apply_spend(rows, fresh=True) == 50
            sent += 50
        assert time.monotonic() - started > sqlite_spend.BACKGROUND_LATE  # written, but late:
        assert spend.background_rows == sent and spend.starved  # so the loop writes the next batches
        for i in range(5):
            assert await store.apply_spend([record(f"b{i}", spend=0.01)], fresh=True) == 1
            await asyncio.sleep(0.005)
        assert spend.loop_rows == 5 and spend.background_rows == sent and spend.starved
    finally:
        hog.kill()
        hog.wait()
    batches = 0
    while spend.starved:  # idle time again: pings on time, one per batch, end that
        assert await store.apply_spend([record(f"p{batches}", spend=0.01)], fresh=True) == 1
        batches += 1
        await asyncio.sleep(0.005)
    assert sqlite_spend.PINGS_ON_TIME <= batches <= 10
    assert spend.background_rows == sent + 1  # the batch that saw the last ping on time: idle time
    rows = [record(f"i{i}", spend=0.01) for i in range(20)]
    assert await store.apply_spend(rows, fresh=True) == 20  # a small first transaction, then full ones
    assert spend.background_rows == sent + 21 and not spend.starved
    assert rows_in(tmp_path / "lockgate.db") == sent + 25 + batches
    assert await key_spend(store) == pytest.approx(0.01 * (sent + 25 + batches))


async def test_a_loop_busy_since_the_last_batch_writes_the_next_itself(store, tmp_path, monkeypatch):
    # half the time is enough here: a loaded machine preempts the spinning test too (its CPU time is
    # what counts, against the wall time)
    monkeypatch.setattr(sqlite_spend, "LOOP_BUSY", 0.5)
    spend = store._sqlite_spend
    assert await store.apply_spend([record("first", spend=0.01)], fresh=True) == 1
    assert spend.background_rows == 1 and not spend.starved
    spun = time.thread_time()
    while time.thread_time() - spun < 0.03:  # the loop's thread computes without a pause: no idle time
        pass
    assert await store.apply_spend([record("busy", spend=0.01)], fresh=True) == 1
    assert spend.loop_rows == 1 and spend.background_rows == 1 and spend.starved  # no idle-time attempt
    assert rows_in(tmp_path / "lockgate.db") == 2


async def test_without_idle_time_the_writers_batches_are_written_on_the_loop_in_chunks(
        store, tmp_path, thread_applies, monkeypatch, on_the_loop):
    monkeypatch.setattr(sqlite_spend, "LOOP_CHUNK", 4)
    spend = store._sqlite_spend
    yields = 0
    original_sleep = asyncio.sleep

    async def counting_sleep(delay, *args):
        nonlocal yields
        if delay == 0:
            yields += 1
        return await original_sleep(delay, *args)

    monkeypatch.setattr(sqlite_spend.asyncio, "sleep", counting_sleep)
    writer = SpendWriter(store, tmp_path / "journal", interval=60)
    for i in range(10):
        writer.append(record(i, spend=0.5))
    assert await writer.flush_once() == 10
    assert yields == 2  # 10 rows in chunks of 4: the loop served other work twice in between
    assert spend.loop_rows == 10 and thread_applies == []
    assert rows_in(tmp_path / "lockgate.db") == 10
    assert await key_spend(store) == pytest.approx(5.0)
    assert (await store.proxy_budget()).spend == pytest.approx(5.0)
    assert writer.journal.applied == writer.journal.size
    # the loop connection never waits for a lock and never checkpoints the WAL itself
    assert spend._loop_conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0
    assert spend._loop_conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert not spend._loop_conn.in_transaction
    writer.journal.close()


async def test_a_lock_held_elsewhere_sends_the_batch_to_the_thread_and_the_loop_never_waits(
        store, tmp_path, thread_applies, on_the_loop):
    other = sqlite3.connect(tmp_path / "lockgate.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer (the management API, a second worker) holds the lock
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    tick = asyncio.create_task(ticker())
    apply = asyncio.create_task(store.apply_spend([record("x", spend=1.0)], fresh=True))
    await asyncio.sleep(0.1)
    assert not apply.done() and ticks >= 10  # the thread waits for the lock; the loop keeps running
    other.execute("COMMIT")
    other.close()
    assert await apply == 1
    tick.cancel()
    assert thread_applies == [1] and store._sqlite_spend.loop_rows == 0
    assert await key_spend(store) == pytest.approx(1.0)


@pytest.mark.parametrize("path", ["idle time", "loop"])
async def test_an_id_already_stored_rolls_back_the_fast_batch_and_counts_each_once(
        store, tmp_path, thread_applies, path, monkeypatch):
    if path == "loop":
        store._sqlite_spend.starved = True
        monkeypatch.setattr(sqlite_spend, "PINGS_ON_TIME", math.inf)
    assert await store.apply_spend([record("dup", spend=1.0)]) == 1  # e.g. applied before a crash
    batch = [record("new-1", spend=1.0), record("dup", spend=1.0), record("new-2", spend=1.0)]
    assert await store.apply_spend(batch, fresh=True) == 2  # IntegrityError, rolled back; then checked
    assert await key_spend(store) == pytest.approx(3.0)  # dup once, new-1, new-2
    assert rows_in(tmp_path / "lockgate.db") == 3
    assert thread_applies == [1, 3] and store._sqlite_spend.loop_rows == 0


async def test_replayed_batches_go_through_the_thread(store, tmp_path, thread_applies):
    assert await store.apply_spend([record("r1"), record("r2")]) == 2  # fresh=False: ids checked in the thread
    assert await store.apply_spend([record("r1"), record("r2")]) == 0
    assert thread_applies == [2, 2] and store._sqlite_spend.loop_rows == 0


async def test_cancelled_mid_batch_rolls_back_and_the_journal_replays_it(store, tmp_path, monkeypatch, on_the_loop):
    monkeypatch.setattr(sqlite_spend, "LOOP_CHUNK", 2)
    writer = SpendWriter(store, tmp_path / "journal", interval=60)
    for i in range(6):
        writer.append(record(f"c{i}", spend=0.25))
    flush = asyncio.create_task(writer.flush_once())
    await asyncio.sleep(0)  # the first chunk is in, the transaction open
    flush.cancel()  # the gateway is killed mid-batch
    with pytest.raises(asyncio.CancelledError):
        await flush
    assert not store._sqlite_spend._loop_conn.in_transaction and rows_in(tmp_path / "lockgate.db") == 0
    writer.journal.close()

    again = SpendWriter(store, tmp_path / "journal", interval=60)  # the next start replays the journal
    assert await again.replay() == 6
    assert await key_spend(store) == pytest.approx(1.5)
    assert rows_in(tmp_path / "lockgate.db") == 6
    again.journal.close()


@pytest.mark.parametrize("idle", [True, False], ids=["idle time", "saturated core"])
async def test_the_wal_is_checkpointed_off_the_loop(store, tmp_path, monkeypatch, idle):
    """In idle time by the spend thread; while that thread is starved, by a thread at the normal
    priority (else the WAL written during the load would be copied back all at once after it)."""
    spend = store._sqlite_spend
    if not idle:
        spend.starved = True
        monkeypatch.setattr(sqlite_spend, "PINGS_ON_TIME", math.inf)
    monkeypatch.setattr(spend, "_checkpoint_due", 0.0)
    seen: list[tuple[str, int]] = []
    done = threading.Event()
    original = spend._checkpoint

    def checkpoint(connection):
        seen.append((threading.current_thread().name, os.sched_getscheduler(0)))
        original(connection)
        done.set()

    monkeypatch.setattr(spend, "_checkpoint", checkpoint)
    assert await store.apply_spend([record("w")], fresh=True) == 1
    assert (spend.background_rows, spend.loop_rows) == ((1, 0) if idle else (0, 1))
    assert await asyncio.to_thread(done.wait, 5)
    name, policy = seen[0]
    if idle:
        assert name.startswith("lockgate-sqlite-spend") and policy == os.SCHED_IDLE
    else:
        assert name.startswith("lockgate-sqlite-checkpoint") and policy == os.SCHED_OTHER


async def test_cancelled_while_the_thread_writes_the_replay_counts_each_once(store, tmp_path, monkeypatch):
    spend = store._sqlite_spend
    entered, release = threading.Event(), threading.Event()
    original = spend._apply

    def slow(records, fresh=False):
        entered.set()
        release.wait(5)
        return original(records, fresh)

    monkeypatch.setattr(spend, "_apply", slow)
    writer = SpendWriter(store, tmp_path / "journal", interval=60)
    for i in range(3):
        writer.append(record(f"t{i}", spend=0.5))
    flush = asyncio.create_task(writer.flush_once())
    assert await asyncio.to_thread(entered.wait, 5)
    flush.cancel()  # the gateway stops while the thread writes: the thread still commits
    with pytest.raises(asyncio.CancelledError):
        await flush
    release.set()
    await in_thread(spend, lambda: None)  # the thread's transaction is over
    assert rows_in(tmp_path / "lockgate.db") == 3 and writer.journal.applied == 0  # not checkpointed
    writer.journal.close()
    monkeypatch.setattr(spend, "_apply", original)

    again = SpendWriter(store, tmp_path / "journal", interval=60)
    assert await again.replay() == 0  # the ids are there: nothing is counted twice
    assert await key_spend(store) == pytest.approx(1.5)
    again.journal.close()
