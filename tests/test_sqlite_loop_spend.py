"""The embedded SQLite's spend batches on the event loop (state/sqlite_spend.py), on a real file:
the writer's fresh batches are written on the loop in chunks; every way that can fail falls back
to the thread path with each record counted once."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

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


async def test_the_writers_batches_are_written_on_the_loop_in_chunks(store, tmp_path, thread_applies, monkeypatch):
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
        store, tmp_path, thread_applies):
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


async def test_an_id_already_stored_rolls_back_the_loop_batch_and_counts_each_once(store, tmp_path, thread_applies):
    assert await store.apply_spend([record("dup", spend=1.0)]) == 1  # e.g. applied before a crash
    batch = [record("new-1", spend=1.0), record("dup", spend=1.0), record("new-2", spend=1.0)]
    assert await store.apply_spend(batch, fresh=True) == 2  # loop: IntegrityError, rolled back; thread: checked
    assert await key_spend(store) == pytest.approx(3.0)  # dup once, new-1, new-2
    assert rows_in(tmp_path / "lockgate.db") == 3
    assert thread_applies == [1, 3] and store._sqlite_spend.loop_rows == 0


async def test_replayed_batches_go_through_the_thread(store, tmp_path, thread_applies):
    assert await store.apply_spend([record("r1"), record("r2")]) == 2  # fresh=False: ids checked in the thread
    assert await store.apply_spend([record("r1"), record("r2")]) == 0
    assert thread_applies == [2, 2] and store._sqlite_spend.loop_rows == 0


async def test_cancelled_mid_batch_rolls_back_and_the_journal_replays_it(store, tmp_path, monkeypatch):
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


async def test_the_wal_is_checkpointed_in_the_thread(store, tmp_path, monkeypatch):
    spend = store._sqlite_spend
    monkeypatch.setattr(spend, "_checkpoint_due", 0.0)
    threads: list[str] = []
    done = threading.Event()
    original = spend._checkpoint

    def checkpoint():
        threads.append(threading.current_thread().name)
        original()
        done.set()

    monkeypatch.setattr(spend, "_checkpoint", checkpoint)
    assert await store.apply_spend([record("w")], fresh=True) == 1
    assert spend.loop_rows == 1
    assert await asyncio.to_thread(done.wait, 5)
    assert threads[0].startswith("lockgate-sqlite-spend")
