"""The admin UI's data layer (lockgate.ui.data) on SQLite and PostgreSQL, against a running gateway's database:
usage per local day reconciles with /spend/logs (DST days included), keyset pages, filters, visibility,
CSV export, audit pages, overview periods, and the live tail's bounded fan-out."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import orjson
import pytest

from lockgate.admin.auth import Caller
from lockgate.errors import BadRequest, PermissionDenied
from lockgate.governance.types import SpendRecord
from lockgate.state.timetext import utc_text
from lockgate.ui.data import audit, logs, overview, tail, usage, zones
from tests.test_admin_support import admin, running  # noqa: F401  (fixtures)
from tests.test_audit_spend_api import apply_spend

# around the spring-forward night of 2025-03-30 (Europe/Paris: +1 -> +2 at 01:00 UTC)
T0 = datetime(2025, 3, 27, 0, 0, tzinfo=UTC)
SPAN_DAYS = 7
ADMIN = Caller(id="master", role="proxy_admin")


@pytest.fixture(scope="module")
def world(admin, running):  # noqa: F811
    tag = uuid.uuid4().hex[:6]
    users = [admin.ok("POST", "/user/new", {"user_id": f"{name}-{tag}", "user_role": "internal_user"})["user_id"]
             for name in ("alice", "bob")]
    teams = [admin.ok("POST", "/team/new", {"team_id": f"{name}-{tag}"})["team_id"] for name in ("red", "blue")]
    keys = [admin.ok("POST", "/key/generate", {"user_id": users[i % 2], "team_id": teams[i % 2],
                                               "key_alias": f"k{i}-{tag}"}) for i in range(4)]
    rnd = random.Random(7)
    records = []
    for i in range(400):
        k = rnd.randrange(4)
        # times spread over the week, many right at local midnights (22:00-23:59 UTC) and around the DST gap
        when = T0 + timedelta(seconds=rnd.uniform(0, SPAN_DAYS * 86400))
        if i % 5 == 0:
            when = when.replace(hour=rnd.choice((21, 22, 23, 0, 1)), minute=rnd.randrange(60))
        status = 200 if i % 9 else 502
        meta = {"stream": i % 2 == 0, "key_alias": keys[k]["key_alias"], "tags": [["a", "b", "c"][i % 3]]}
        if i % 2 == 0:
            meta["ttft_ms"] = 100.0 + i
        records.append(SpendRecord(
            request_id=f"{tag}-{i:04d}", api_key=keys[k]["token"], user_id=users[k % 2], team_id=teams[k % 2],
            organization_id=None, end_user=None, model_group=["m1", "m2", "m3"][i % 3], model="mock",
            deployment_id="d", provider="mock", route="chat", prompt_tokens=rnd.randrange(1, 500),
            completion_tokens=rnd.randrange(1, 500), cached_tokens=0,
            spend=round(rnd.uniform(0, 0.01), 9) if status == 200 else 0.0, status=status,
            start_time=utc_text(when), end_time=utc_text(when + timedelta(milliseconds=rnd.randrange(50, 4000))),
            metadata=orjson.dumps(meta).decode()))
    # two rows at the very same instant: the cursor's tie-break on request_id
    same = T0 + timedelta(days=3, hours=5)
    for suffix in ("x", "y"):
        records.append(records[0]._replace(request_id=f"{tag}-tie-{suffix}", start_time=utc_text(same),
                                           end_time=utc_text(same + timedelta(seconds=1))))
    assert apply_spend(running.database_url, records) == len(records)
    return SimpleNamespace(tag=tag, users=users, teams=teams, keys=keys, records=records, admin=admin)


@pytest.fixture
async def store(running):  # noqa: F811
    from lockgate.state import open_store

    st = await open_store(SimpleNamespace(database_url=running.database_url, database_path=None, max_budget=None,
                                          budget_duration=None), None)
    try:
        yield st
    finally:
        await st.close()


def _ours(world, rows):
    return [r for r in rows if r["request_id"].startswith(world.tag)]


def _local_day(record: SpendRecord, tz) -> str:
    return datetime.fromisoformat(record.start_time).replace(tzinfo=UTC).astimezone(tz).date().isoformat()


@pytest.mark.parametrize("tz_name", ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
async def test_day_totals_reconcile_with_spend_logs(world, store, tz_name):
    tz = zones.zone(tz_name)
    first, last = T0.date() - timedelta(days=1), T0.date() + timedelta(days=SPAN_DAYS + 1)
    result = await usage.usage(store, ADMIN, usage.UsageQuery(first, last, tz))
    assert list(result.days) == [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    seen = 0
    for day, totals in result.days.items():
        d = datetime.fromisoformat(day).date()
        lo, hi = zones.day_range(d, d, tz)
        rows = world.admin.ok("GET", "/spend/logs", start_date=lo.isoformat(), end_date=hi.isoformat(),
                              page_size=1000)["data"]
        assert totals.requests == len(rows), day
        assert totals.spend == pytest.approx(math.fsum(r["spend"] for r in rows), abs=1e-12), day
        assert totals.prompt_tokens == sum(r["prompt_tokens"] for r in rows)
        assert totals.completion_tokens == sum(r["completion_tokens"] for r in rows)
        # and the day each row falls in, computed independently in Python
        expected = [r for r in world.records if _local_day(r, tz) == day]
        assert totals.requests == len(expected), day
        seen += totals.requests
    assert seen == len(world.records)


def test_zone_segments_find_the_dst_transition():
    tz = ZoneInfo("Europe/Paris")
    parts = zones.segments(tz, T0, T0 + timedelta(days=7))
    assert [(p.start, p.offset) for p in parts] == [(T0, 3600), (datetime(2025, 3, 30, 1, 0, tzinfo=UTC), 7200)]
    assert zones.day_range(datetime(2025, 3, 30).date(), datetime(2025, 3, 30).date(), tz) == (
        datetime(2025, 3, 29, 23, 0, tzinfo=UTC), datetime(2025, 3, 30, 22, 0, tzinfo=UTC))  # a 23-hour day
    with pytest.raises(BadRequest):
        zones.zone("Mars/Olympus")


async def test_usage_by_dimension_and_visibility(world, store):
    tz = zones.zone("Europe/Paris")
    q = usage.UsageQuery(T0.date() - timedelta(days=1), T0.date() + timedelta(days=SPAN_DAYS + 1), tz, "model")
    result = await usage.usage(store, ADMIN, q)
    by_model = {g.id: g for g in result.groups}
    assert set(by_model) == {"m1", "m2", "m3"}
    for model, g in by_model.items():
        rows = [r for r in world.records if r.model_group == model]
        assert g.total.requests == len(rows)
        assert g.total.spend == pytest.approx(math.fsum(r.spend for r in rows), abs=1e-12)
        for day, t in g.days.items():
            assert t.requests == len([r for r in rows if _local_day(r, tz) == day])
    keys = await usage.usage(store, ADMIN, usage.UsageQuery(q.first, q.last, tz, "key"), top=2)
    assert [g.label for g in keys.groups[:2]] != [] and keys.groups[-1].id == usage.OTHER
    assert {g.label for g in keys.groups[:2]} <= {k["key_alias"] for k in world.keys}
    assert sum(g.total.requests for g in keys.groups) == keys.total.requests  # top 2 + other = everything
    tags = await usage.usage(store, ADMIN, usage.UsageQuery(q.first, q.last, tz, "tag"))
    assert {g.id: g.total.requests for g in tags.groups} == {
        t: len([r for r in world.records if orjson.loads(r.metadata)["tags"] == [t]]) for t in "abc"}

    alice = Caller(id=world.users[0], role="internal_user", user_id=world.users[0])
    mine = await usage.usage(store, alice, usage.UsageQuery(q.first, q.last, tz, "user"))
    assert [g.id for g in mine.groups] == [world.users[0]]
    assert mine.total.requests == len([r for r in world.records if r.user_id == world.users[0]])
    with pytest.raises(BadRequest):
        usage.UsageQuery(q.last, q.first, tz)
    with pytest.raises(BadRequest):
        usage.UsageQuery(q.first, q.last, tz, "colour")


async def test_csv_export_matches_the_day_totals(world, store):
    tz = zones.zone("America/New_York")
    q = usage.UsageQuery(T0.date() - timedelta(days=1), T0.date() + timedelta(days=SPAN_DAYS + 1), tz, "key")
    text = "".join([chunk async for chunk in usage.csv_lines(store, ADMIN, q)])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and set(rows[0]) == {"day", "key", "key_alias", "spend", "requests", "prompt_tokens",
                                     "completion_tokens"}
    totals = (await usage.usage(store, ADMIN, usage.UsageQuery(q.first, q.last, tz))).days
    for day, t in totals.items():
        mine = [r for r in rows if r["day"] == day]
        assert sum(int(r["requests"]) for r in mine) == t.requests
        assert math.fsum(float(r["spend"]) for r in mine) == pytest.approx(t.spend, abs=1e-12)
    assert {r["key_alias"] for r in rows} <= {k["key_alias"] for k in world.keys}


async def test_logs_keyset_pages_filters_and_detail(world, store):
    expected = sorted(world.records, key=lambda r: (r.start_time, r.request_id), reverse=True)
    got, after, pages = [], None, 0
    while True:
        page = await logs.page(store, ADMIN, logs.LogFilters(), after, size=37)
        got += [r["request_id"] for r in page.rows]
        pages += 1
        after = page.next_cursor
        if after is None:
            break
    assert [rid for rid in got if rid.startswith(world.tag)] == [r.request_id for r in expected]
    assert pages == math.ceil(len(got) / 37)

    async def ids(caller: Caller = ADMIN, **filters) -> list[str]:
        out, after = [], None
        while True:
            page = await logs.page(store, caller, logs.LogFilters(**filters), after, size=200)
            out += [r["request_id"] for r in page.rows if r["request_id"].startswith(world.tag)]
            if (after := page.next_cursor) is None:
                return sorted(out)

    key0 = world.keys[0]
    assert await ids(key=key0["key"]) == sorted(r.request_id for r in world.records if r.api_key == key0["token"])
    assert await ids(team_id=world.teams[1], model="m2") == sorted(
        r.request_id for r in world.records if r.team_id == world.teams[1] and r.model_group == "m2")
    assert await ids(status="error") == sorted(r.request_id for r in world.records if r.status >= 400)
    assert await ids(status="502") == await ids(status="error")
    lo, hi = T0 + timedelta(days=2), T0 + timedelta(days=3)
    assert await ids(start=lo, end=hi) == sorted(
        r.request_id for r in world.records if utc_text(lo) <= r.start_time < utc_text(hi))
    with pytest.raises(BadRequest):
        await logs.page(store, ADMIN, logs.LogFilters(status="sometimes"))
    with pytest.raises(BadRequest):
        await logs.page(store, ADMIN, logs.LogFilters(), "not-a-cursor")

    bob = Caller(id=world.users[1], role="internal_user", user_id=world.users[1])
    assert await ids(bob) == sorted(r.request_id for r in world.records if r.user_id == world.users[1])
    assert await ids(bob, user_id=world.users[0]) == []  # a filter never widens what a caller sees
    row = await logs.detail(store, ADMIN, expected[0].request_id)
    assert row is not None and row["key_alias"] is not None and row["latency_ms"] > 0
    assert row["metadata"]["tags"] and row["api_key"] == expected[0].api_key
    theirs = next(r for r in world.records if r.user_id == world.users[0])
    assert await logs.detail(store, bob, theirs.request_id) is None
    assert await logs.detail(store, ADMIN, "no-such-request") is None


async def test_audit_pages_for_readers_only(world, store):
    created = {k["token"] for k in world.keys}
    got, after = [], None
    while True:
        page = await audit.page(store, ADMIN, audit.AuditFilters(table_name="keys", action="created"), after, size=2)
        got += page.rows
        after = page.next_cursor
        if after is None:
            break
    assert created <= {r["object_id"] for r in got}
    times = [(r["created_at"], r["id"]) for r in got]
    assert times == sorted(times, reverse=True)
    with pytest.raises(PermissionDenied):
        await audit.page(store, Caller(id=world.users[0], role="internal_user", user_id=world.users[0]),
                         audit.AuditFilters())
    viewer = Caller(id="v", role="proxy_admin_viewer", user_id="v")
    assert (await audit.page(store, viewer, audit.AuditFilters(object_id=world.keys[0]["token"]))).rows


async def test_overview_periods(world, store):
    tz = zones.zone("Europe/Paris")
    now = T0 + timedelta(days=SPAN_DAYS - 1, hours=12)
    today = now.astimezone(tz).date()
    got = {p.name: p for p in await overview.periods(store, ADMIN, tz, now)}
    for name, days in overview.PERIODS:
        first = today - timedelta(days=days - 1)
        rows = [r for r in world.records if first.isoformat() <= _local_day(r, tz) <= today.isoformat()]
        p = got[name]
        assert p.requests == len(rows) and p.errors == len([r for r in rows if r.status >= 400]), name
        assert p.spend == pytest.approx(math.fsum(r.spend for r in rows), abs=1e-12)
        assert p.tokens == sum(r.prompt_tokens + r.completion_tokens for r in rows)
        latency = [(datetime.fromisoformat(r.end_time) - datetime.fromisoformat(r.start_time)).total_seconds() * 1000
                   for r in rows]
        assert p.avg_latency_ms == pytest.approx(sum(latency) / len(latency), abs=0.1)
        ttfts = [orjson.loads(r.metadata)["ttft_ms"] for r in rows if "ttft_ms" in orjson.loads(r.metadata)]
        assert p.avg_ttft_ms == pytest.approx(sum(ttfts) / len(ttfts), abs=0.1)
    bob = Caller(id=world.users[1], role="internal_user", user_id=world.users[1])
    mine = {p.name: p for p in await overview.periods(store, bob, tz, now)}
    assert 0 < mine["30 days"].requests < got["30 days"].requests


async def test_live_tail_is_bounded_filtered_and_marks_drops():
    hub = tail.LiveTail(limit=3, max_subscribers=2)
    alice = Caller(id="alice", role="internal_user", user_id="alice")
    with hub.subscribe(ADMIN) as everyone, hub.subscribe(alice) as own:
        with pytest.raises(tail.TooManyTails), hub.subscribe(ADMIN):
            pass
        for i in range(5):
            row = {"request_id": f"r{i}", "user_id": "alice" if i % 2 else "bob"}
            for sub in hub.subscribers:
                sub.offer(row)
        assert await everyone.batch(1) == [{"request_id": "r0", "user_id": "bob"},
                                           {"request_id": "r1", "user_id": "alice"},
                                           {"request_id": "r2", "user_id": "bob"}, {"dropped": 2}]
        assert [r["request_id"] for r in await own.batch(1)] == ["r1", "r3"]
        assert await own.batch(0.05) == []  # nothing new: a heartbeat's turn
        stream = tail.sse(own, heartbeat=0.05)
        assert (await anext(stream)).startswith(b"retry:")
        own.offer({"request_id": "r9", "user_id": "alice"})
        assert await anext(stream) == b'event: row\ndata: {"request_id":"r9","user_id":"alice"}\n\n'
        assert await anext(stream) == b": heartbeat\n\n"
    assert hub.subscribers == []
    await asyncio.sleep(0)


async def _rollup_matches_spend_logs(engine) -> int:
    """spend_rollup equals spend_logs grouped by 15-minute bucket and model group (sums to 1e-9)."""
    from sqlalchemy import select

    from lockgate.state.models import SpendLog, SpendRollup

    async with engine.connect() as conn:
        rows = (await conn.execute(select(SpendLog.start_time, SpendLog.end_time, SpendLog.model_group,
                                          SpendLog.status, SpendLog.spend, SpendLog.prompt_tokens,
                                          SpendLog.completion_tokens, SpendLog.metadata_))).all()
        rolled = (await conn.execute(select(SpendRollup))).all()
    expected: dict = {}
    for start, end, model, status, spend, prompt, completion, meta in rows:
        bucket = start.replace(minute=start.minute - start.minute % 15, second=0, microsecond=0)
        e = expected.setdefault((bucket, model), [0, 0, 0.0, 0, 0, 0.0, 0.0, 0])
        ttft = (meta or {}).get("ttft_ms")
        ttft = ttft if isinstance(ttft, int | float) else None  # a non-number is not a time
        for i, v in enumerate((1, status >= 400, spend, prompt, completion, (end - start).total_seconds() * 1000,
                               ttft or 0.0, ttft is not None)):
            e[i] += v
    got = {(r.bucket, r.model_group): [r.requests, r.errors, r.spend, r.prompt_tokens, r.completion_tokens,
                                       r.latency_ms, r.ttft_ms, r.ttft_count] for r in rolled if r.requests}
    assert set(got) == set(expected)
    for k, values in expected.items():
        assert got[k][:2] == values[:2] and got[k][3:5] == values[3:5] and got[k][7] == values[7], k
        assert got[k][2] == pytest.approx(values[2], abs=1e-9) and got[k][5] == pytest.approx(values[5], abs=1e-3)
        assert got[k][6] == pytest.approx(values[6], abs=1e-6)
    return len(rows)


async def test_rollup_follows_inserts_replays_and_deletes(world, store):
    assert await _rollup_matches_spend_logs(store.engine) >= len(world.records)
    assert await store.apply_spend(world.records[:50]) == 0  # a replay adds nothing, to the rollup neither
    extra = world.records[0]._replace(request_id=f"{world.tag}-gone", metadata='{"ttft_ms": "not a number"}')
    assert await store.apply_spend([extra]) == 1
    await _rollup_matches_spend_logs(store.engine)
    from sqlalchemy import delete

    from lockgate.state.models import SpendLog

    async with store.sessions.begin() as s:  # a retention job deleting rows takes them out of the rollup
        await s.execute(delete(SpendLog).where(SpendLog.request_id == extra.request_id))
    await _rollup_matches_spend_logs(store.engine)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migration_0005_backfills_the_rollup(backend, tmp_path, world, monkeypatch):
    """A database at 0004 holding spend rows: the upgrade fills spend_rollup from them, then the writer keeps it."""
    from lockgate.state import rollup
    from lockgate.state import migrate
    from lockgate.state.db import create_engine, normalize_url
    from lockgate.state.store import SQLStore
    from tests.test_admin_support import database_for

    with database_for(backend, tmp_path) as url:
        engine = create_engine(normalize_url(url))
        try:
            await migrate.run_alembic(engine, "0004")
            st = SQLStore(engine)
            st._sqlite_spend = None  # the ORM insert path (the file writer needs the current schema)
            with monkeypatch.context() as m:
                m.setattr(rollup, "batch", lambda records: [])  # the writer of 0004: no spend_rollup yet
                assert await st.apply_spend(world.records[:120]) == 120
            await migrate.upgrade(engine)
            assert await _rollup_matches_spend_logs(engine) == 120
            assert await st.apply_spend(world.records[120:]) == len(world.records) - 120
            assert await _rollup_matches_spend_logs(engine) == len(world.records)
        finally:
            await engine.dispose()
