"""Spend journal and batched writer: replay without double counting, outages only delay, rotation."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime, timezone

from lockgate.governance.types import SpendRecord
from lockgate.state import journal
from lockgate.state.journal import decode, encode, open_journal
from lockgate.state.spend_writer import SpendWriter
from lockgate.state.timetext import utc_text


class FakeStore:
    """apply_spend as the Store protocol says: request ids already present are ignored."""

    def __init__(self) -> None:
        self.rows: dict[str, SpendRecord] = {}
        self.fail = 0
        self.calls = 0

    async def apply_spend(self, records, fresh=False):
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise ConnectionError("database down")
        new = [r for r in records if r.request_id not in self.rows]
        for r in new:
            self.rows[r.request_id] = r
        return len(new)


def record(spend: float = 0.01) -> SpendRecord:
    now = utc_text(datetime.now(timezone.utc))
    return SpendRecord(request_id=uuid.uuid4().hex, api_key="h" * 64, user_id="u", team_id=None,
                       organization_id=None, end_user=None, model_group="m", model="gpt-4o", deployment_id="d",
                       provider="openai", route="chat", prompt_tokens=3, completion_tokens=4, cached_tokens=0,
                       spend=spend, status=200, start_time=now, end_time=now, metadata='{"stream":false}')


def test_encode_decode_roundtrip():
    r = record()
    assert decode(encode(r).rstrip(b"\n")) == r


async def test_writer_batches_and_checkpoints(tmp_path):
    store = FakeStore()
    writer = SpendWriter(store, tmp_path, interval=0.02, batch_size=50)
    writer.start()
    records = [record() for _ in range(120)]
    for r in records:
        writer.append(r)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(store.rows) == 120:
            break
    assert set(store.rows) == {r.request_id for r in records}
    assert store.calls >= 3  # batches of at most 50
    assert writer.journal.applied == writer.journal.size
    await writer.close()


async def test_outage_only_delays(tmp_path):
    store = FakeStore()
    store.fail = 3
    writer = SpendWriter(store, tmp_path, interval=0.01, max_backoff=0.05)
    writer.start()
    records = [record() for _ in range(10)]
    for r in records:
        writer.append(r)
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(store.rows) == 10:
            break
    assert len(store.rows) == 10 and writer.failures == 3
    await writer.close()


async def test_crash_then_replay_applies_each_record_once(tmp_path):
    store = FakeStore()
    # process 1 journals 30 records, 10 of which were applied before the "crash"
    first = SpendWriter(store, tmp_path)
    records = [record() for _ in range(30)]
    for r in records[:10]:
        first.append(r)
    await first.flush_once()
    for r in records[10:]:
        first.append(r)
    # simulate a crash between apply and checkpoint for 5 more: applied, checkpoint not advanced
    for r in records[10:15]:
        store.rows[r.request_id] = r
    first.journal.close()  # the lock dies with the process
    # process 2 starts and replays
    second = SpendWriter(store, tmp_path)
    assert second.journal.index == first.journal.index  # reclaims the dead process's journal
    applied = await second.replay()
    assert applied == 15  # only what the database did not have
    assert set(store.rows) == {r.request_id for r in records}
    await second.close()


async def test_orphan_journal_of_another_index_is_replayed(tmp_path):
    store = FakeStore()
    live = open_journal(tmp_path)  # index 0 held by a live process
    dead = open_journal(tmp_path)  # index 1: will die with unapplied records
    lost = [record() for _ in range(4)]
    for r in lost:
        dead.append(r)
    dead.close()
    writer = SpendWriter(store, tmp_path)
    assert writer.journal.index == 1
    live_records = [record()]
    live.append(live_records[0])
    await writer.replay()
    assert set(store.rows) == {r.request_id for r in lost}  # the live process's journal is not touched
    live.close()
    await writer.close()


async def test_rotation_after_everything_applied(tmp_path):
    store = FakeStore()
    writer = SpendWriter(store, tmp_path, rotate_bytes=1)
    for _ in range(5):
        writer.append(record())
    await writer.flush_once()
    assert writer.journal.size == 0 and writer.journal.path.read_bytes().strip(b"\0") == b""  # no record left
    writer.append(record())
    await writer.flush_once()
    assert len(store.rows) == 6
    await writer.close()


class ArrivingStore(FakeStore):
    """Records keep arriving while a batch is written (a busy gateway)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrive: list[tuple[SpendWriter, SpendRecord]] = []

    async def apply_spend(self, records, fresh=False):
        while self.arrive:
            writer, r = self.arrive.pop()
            writer.append(r)
        return await super().apply_spend(records, fresh)


def late_arrival(tmp_path, n: int) -> tuple[ArrivingStore, SpendWriter, list[SpendRecord], SpendRecord]:
    """A writer with ``n`` records journaled and one more that arrives while they are written."""
    store = ArrivingStore()
    writer = SpendWriter(store, tmp_path, rotate_bytes=1)
    first = [record() for _ in range(n)]
    for r in first:
        writer.append(r)
    late = record()
    store.arrive.append((writer, late))
    return store, writer, first, late


async def test_rotation_keeps_the_records_that_arrived_during_the_batch(tmp_path):
    store, writer, first, late = late_arrival(tmp_path, 5)
    assert await writer.flush_once() == 5
    # rotated with a tail: the new file holds just the record that arrived meanwhile, not applied yet
    assert writer.journal.size == len(encode(late)) and writer.journal.applied == 0
    assert writer.journal.path.read_bytes().rstrip(b"\0") == encode(late)
    assert not writer.journal.path.with_name(writer.journal.path.name + ".new").exists()
    assert await writer.flush_once() == 1  # handed over in memory, at its new offset
    assert set(store.rows) == {r.request_id for r in [*first, late]}
    writer.append(record())
    assert await writer.flush_once() == 1 and len(store.rows) == 7
    await writer.close()


async def test_a_crash_after_a_rotation_with_a_tail_replays_the_tail(tmp_path):
    store, writer, _, late = late_arrival(tmp_path, 3)
    await writer.flush_once()
    writer.journal.close()  # the process dies before the tail is applied
    again = SpendWriter(store, tmp_path)
    assert await again.replay() == 1
    assert late.request_id in store.rows and len(store.rows) == 4
    await again.close()


async def test_a_crash_during_a_rotation_replays_the_old_journal_without_double_counting(tmp_path, monkeypatch):
    store, writer, first, late = late_arrival(tmp_path, 3)

    def crash(*args):
        raise OSError("killed before the rename")

    monkeypatch.setattr(journal.os, "rename", crash)
    assert await writer.flush_once() == 3  # applied; the rotation failed, and the old journal is kept
    monkeypatch.undo()
    assert not writer.journal.path.with_name(writer.journal.path.name + ".new").exists()
    writer.journal.close()  # the process dies
    assert journal.read_checkpoint(writer.journal.ckpt_path) == 0  # reset before the new file was put in place
    again = SpendWriter(store, tmp_path)
    assert await again.replay() == 1  # the old journal again: the three stored are skipped, the tail applied
    assert set(store.rows) == {r.request_id for r in [*first, late]}
    await again.close()


async def test_torn_last_line_is_not_applied_until_complete(tmp_path):
    store = FakeStore()
    writer = SpendWriter(store, tmp_path)
    r = record()
    data = encode(r)
    writer.journal.write(data[:20])
    assert await writer.flush_once() == 0
    writer.journal.write(data[20:])
    assert await writer.flush_once() == 1
    await writer.close()


async def test_a_journal_reopened_after_a_crash_finds_its_records_before_the_zeros(tmp_path):
    first = open_journal(tmp_path)
    records = [record() for _ in range(3)]
    for r in records:
        first.append(r)
    first.close()  # the process died: nothing applied
    assert len(first.path.read_bytes()) >= journal.GROW  # the file runs ahead of its records, zero-filled
    store = FakeStore()
    writer = SpendWriter(store, tmp_path)
    assert writer.journal.size == sum(len(encode(r)) for r in records)
    assert await writer.replay() == 3
    assert set(store.rows) == {r.request_id for r in records}
    await writer.close()


async def test_a_record_torn_by_a_crash_is_ended_so_the_next_ones_stay_whole(tmp_path):
    first = open_journal(tmp_path)
    whole, torn, after = record(), record(), record()
    first.append(whole)
    first.write(encode(torn)[:25])  # the copy stopped mid-record
    first.close()
    store = FakeStore()
    writer = SpendWriter(store, tmp_path)
    writer.append(after)
    assert await writer.replay() == 2  # the torn line is skipped, the record after it is read whole
    assert set(store.rows) == {whole.request_id, after.request_id}
    await writer.close()


async def test_the_map_grows_with_the_journal(tmp_path, monkeypatch):
    import mmap

    monkeypatch.setattr(journal, "GROW", mmap.PAGESIZE)
    store = FakeStore()
    writer = SpendWriter(store, tmp_path, rotate_bytes=1 << 30)
    records = [record() for _ in range(200)]  # ~80 KB: several times the first map
    for r in records:
        writer.append(r)
    assert writer.journal.size > 10 * mmap.PAGESIZE
    assert await writer.flush_once() == 200
    assert set(store.rows) == {r.request_id for r in records}
    writer.journal.close()
    again = open_journal(tmp_path)  # everything is in the file, in order
    assert again.size == writer.journal.size and again.applied == again.size
    again.close()


def _mapped_rss_kb(path) -> int:  # noqa: ANN001
    rss, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if "-" in line.split(" ", 1)[0] and not line.startswith(("Rss", "Size")):
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                rss += int(line.split()[1])
    return rss


def test_a_journal_that_keeps_growing_leaves_the_process_memory_but_not_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "RELEASE", 256 << 10)
    j = open_journal(tmp_path)
    for i in range(8000):  # ~2 MB, never applied (a database outage)
        j.append(record(spend=float(i)))
    assert j.size > 6 * journal.RELEASE
    assert _mapped_rss_kb(j.path) * 1024 <= journal.RELEASE + 2 * 4096  # only the last pages are resident
    j.close()
    again = open_journal(tmp_path)
    got: list[float] = []
    while again.applied < again.size:
        batch, end = again.pending()
        got.extend(r.spend for r in batch)
        again.checkpoint(end)
    assert got == [float(i) for i in range(8000)]  # every record, in order, in the file
    again.close()


def test_a_journal_of_the_os_write_era_is_read_to_its_end(tmp_path):
    """Files written with ``os.write`` (no zeros after the records) are read whole."""
    records = [record() for _ in range(2)]
    (tmp_path / "spend-0.jsonl").write_bytes(b"".join(encode(r) for r in records))
    j = open_journal(tmp_path)
    assert j.size == sum(len(encode(r)) for r in records)
    assert [r.request_id for r in j.pending()[0]] == [r.request_id for r in records]
    j.close()


def test_records_survive_kill_9_of_the_writing_process(tmp_path):
    """The map is the page cache: records copied in are there for the next process, no close, no sync."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from lockgate.state.journal import open_journal\n"
        "from tests.test_spend_journal import record\n"
        "j = open_journal(Path(sys.argv[1]))\n"
        "for i in range(50):\n"
        "    j.append(record(spend=float(i)))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=os.getcwd(), timeout=60)
    assert done.returncode == -signal.SIGKILL
    j = open_journal(tmp_path)
    records, _ = j.pending()
    assert [r.spend for r in records] == [float(i) for i in range(50)]
    j.close()


def test_the_first_journal_format_is_still_replayed():
    """Journals written before records became JSON arrays: one object a line, ISO times."""
    line = (b'{"request_id":"r1","api_key":"h","user_id":null,"team_id":null,"organization_id":null,'
            b'"end_user":null,"model_group":"m","model":"gpt-4o","deployment_id":"d","provider":"openai",'
            b'"route":"chat","prompt_tokens":3,"completion_tokens":4,"cached_tokens":0,"spend":0.5,"status":200,'
            b'"start_time":"2026-01-02T03:04:05.123456+00:00","end_time":"2026-01-02T03:04:06+00:00",'
            b'"metadata":{"stream":false}}')
    r = decode(line)
    assert r.request_id == "r1" and r.spend == 0.5 and r.metadata == '{"stream":false}'
    assert r.start_time == "2026-01-02 03:04:05.123456" and r.end_time == "2026-01-02 03:04:06.000000"


def test_epoch_text_matches_sqlalchemy_text_form():
    from lockgate.state.timetext import EpochText, parse_utc_text

    text = EpochText()
    base = datetime(2026, 12, 1, 6, 0, 0, tzinfo=timezone.utc)
    for micro in (0, 1, 123456, 999999):
        value = base.replace(microsecond=micro)
        assert text(value.timestamp()) == utc_text(value)
        assert parse_utc_text(utc_text(value)) == value.replace(tzinfo=None)
    assert text(base.timestamp() + 0.9999996) == "2026-12-01 06:00:01.000000"  # rounds into the next second
    assert text(base.timestamp() + 61.5) == "2026-12-01 06:01:01.500000"


async def test_a_gathering_writer_waits_its_interval(tmp_path):
    """Records that arrive while a batch is being gathered join it: only the first record after an
    idle spell (everything applied) or a full batch wakes the writer early.  (Before, the writer's
    count was reset after each flush, so the next record woke a gathering writer at once: batches
    of a few records every ~2 ms at one connection instead of one every 10 ms.)"""

    class SlowStore(FakeStore):
        batches: list[int] = []

        async def apply_spend(self, records, fresh=False):
            self.batches.append(len(records))
            await asyncio.sleep(0.01)  # records keep arriving during the write
            return await super().apply_spend(records, fresh)

    store = SlowStore()
    writer = SpendWriter(store, tmp_path, interval=0.1, batch_size=500)
    writer.start()
    for _ in range(30):  # one record every ~5 ms for ~150 ms
        writer.append(record())
        await asyncio.sleep(0.005)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(store.rows) == 30:
            break
    assert len(store.rows) == 30
    assert len(store.batches) <= 4, store.batches  # ~150 ms of records at 100 ms a batch, not one per record
    await writer.close()
