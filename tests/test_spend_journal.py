"""Spend journal and batched writer: replay without double counting, outages only delay, rotation."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime, timezone

from lockgate.governance.types import SpendRecord
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
    assert writer.journal.size == 0 and os.path.getsize(writer.journal.path) == 0
    writer.append(record())
    await writer.flush_once()
    assert len(store.rows) == 6
    await writer.close()


async def test_torn_last_line_is_not_applied_until_complete(tmp_path):
    store = FakeStore()
    writer = SpendWriter(store, tmp_path)
    r = record()
    data = encode(r)
    os.write(writer.journal.fd, data[:20])
    writer.journal.size += 20
    assert await writer.flush_once() == 0
    os.write(writer.journal.fd, data[20:])
    writer.journal.size += len(data) - 20
    assert await writer.flush_once() == 1
    await writer.close()


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
