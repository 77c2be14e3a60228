"""spend_daily (ui/data/daily.py): the usage page's closed days by key, team, user and tag give exactly the
rows that reading spend_logs gives, on SQLite and PostgreSQL; a late row for a closed day is picked up and
never counted twice; days of different timezones never mix.  spend_window (ui/data/windows.py): the top keys
of the 7- and 30-day ranges read from the window of their closed days plus today's rows are exactly the raw
path's; a window that no longer matches (a late row, a change of day, a negative spend today) is not used."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import func, select

from lockgate.admin.auth import Caller
from lockgate.governance.types import SpendRecord
from lockgate.state.timetext import utc_text
from lockgate.ui.data import daily, usage, windows, zones
from tests.test_admin_support import database_for

ADMIN = Caller(id="master", role="proxy_admin")
DAYS = 6


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request, tmp_path):
    from lockgate.state import migrate
    from lockgate.state.db import create_engine, normalize_url
    from lockgate.state.store import SQLStore

    with database_for(request.param, tmp_path) as url:
        engine = create_engine(normalize_url(url))
        await migrate.upgrade(engine)
        st = SQLStore(engine)
        try:
            yield st
        finally:
            await st.close()


def _record(rnd: random.Random, when: datetime, i: int, tag: str) -> SpendRecord:
    status = 200 if i % 7 else 500
    tags = [["a"], ["b"], ["a", "c"], [], ["d"]][i % 5]
    meta: dict = {"tags": tags} if i % 11 else {}
    return SpendRecord(
        request_id=f"{tag}-{i:05d}", api_key=None if i % 13 == 0 else f"{'k' * 56}{rnd.randrange(12):08d}",
        user_id=None if i % 4 == 0 else f"user-{rnd.randrange(5)}", team_id=None if i % 3 == 0 else f"team-{i % 4}",
        organization_id=None, end_user=None, model_group=["m1", "m2"][i % 2], model="mock", deployment_id="d",
        provider="mock", route="chat", prompt_tokens=rnd.randrange(1, 500), completion_tokens=rnd.randrange(1, 500),
        cached_tokens=0, spend=round(rnd.uniform(0, 0.01), 9) if status == 200 else 0.0, status=status,
        start_time=utc_text(when), end_time=utc_text(when + timedelta(milliseconds=rnd.randrange(50, 900))),
        metadata=orjson.dumps(meta).decode())


async def _seed(store, n: int = 600) -> list[SpendRecord]:
    rnd = random.Random(11)
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    records = []
    for i in range(n):
        when = now - timedelta(seconds=rnd.uniform(60, DAYS * 86400))
        if i % 6 == 0:  # many right around midnights (UTC, New York, Kolkata)
            when = when.replace(hour=rnd.choice((0, 4, 5, 18, 23)), minute=rnd.choice((0, 29, 30, 59)))
            if when > now:
                when -= timedelta(days=1)
        records.append(_record(rnd, when, i, tag))
    assert await store.apply_spend(records) == n
    return records


async def _raw(store, q, top, monkeypatch):
    async def nothing(*_a, **_kw):
        return set()

    with monkeypatch.context() as m:
        m.setattr(daily, "trusted_days", nothing)
        return await usage.usage(store, ADMIN, q, top=top)


def _same(a: usage.Usage, b: usage.Usage) -> None:
    def close(x: usage.Totals, y: usage.Totals, where: str) -> None:
        assert (x.requests, x.prompt_tokens, x.completion_tokens) == (y.requests, y.prompt_tokens,
                                                                       y.completion_tokens), where
        assert x.spend == pytest.approx(y.spend, rel=1e-12, abs=1e-12), where

    assert [g.id for g in a.groups] == [g.id for g in b.groups]
    for ga, gb in zip(a.groups, b.groups, strict=True):
        assert ga.label == gb.label
        close(ga.total, gb.total, ga.id)
        assert set(ga.days) == set(gb.days), ga.id
        for d in ga.days:
            close(ga.days[d], gb.days[d], f"{ga.id} {d}")
    for d in a.days:
        close(a.days[d], b.days[d], d)


def _query(tz, group_by):
    today = zones.today(tz)
    return usage.UsageQuery(today - timedelta(days=DAYS + 1), today, tz, group_by)


async def _used_stored(store, q) -> set[str]:
    async with store.sessions() as s:
        return await daily.trusted_days(s, store.dialect, q.tz, q.days)


@pytest.mark.parametrize("tz_name", ["UTC", "America/New_York", "Asia/Kolkata"])
async def test_materialised_days_give_the_raw_rows(store, tz_name, monkeypatch):
    records = await _seed(store)
    tz = zones.zone(tz_name)
    assert await daily.refresh(store, tz) >= DAYS - 1
    assert await daily.refresh(store, tz) == 0  # nothing changed: nothing recomputed
    for dimension in daily.DIMENSIONS:
        q = _query(tz, dimension)
        assert len(await _used_stored(store, q)) == DAYS + 1  # every closed day of the range is stored
        for top in (3, 100):
            got = await usage.usage(store, ADMIN, q, top=top)
            want = await _raw(store, q, top, monkeypatch)
            _same(got, want)
            if top == 100 and dimension != "tag":  # every group plus the rest: everything
                assert sum(g.total.requests for g in got.groups) == len(records)
    # the stored totals are the rows of each local day, computed independently in Python
    async with store.sessions() as s:
        rows = (await s.execute(select(daily.SpendDaily.day, daily.SpendDaily.requests)
                                .where(daily.SpendDaily.tz == tz_name, daily.SpendDaily.dimension == daily.TOTAL))).all()
    today = zones.today(tz).isoformat()
    expected: dict[str, int] = {}
    for r in records:
        d = datetime.fromisoformat(r.start_time).replace(tzinfo=UTC).astimezone(tz).date().isoformat()
        if d < today:
            expected[d] = expected.get(d, 0) + 1
    assert dict(rows) == expected


async def test_a_late_row_for_a_closed_day_is_recomputed_never_double_counted(store, monkeypatch):
    records = await _seed(store, 300)
    tz = zones.zone("Europe/Paris")
    await daily.refresh(store, tz)
    yesterday = zones.today(tz) - timedelta(days=1)
    noon = zones.day_start(yesterday, tz) + timedelta(hours=12)
    late = _record(random.Random(1), noon, 99_999, "late")._replace(api_key="late-key", team_id="late-team",
                                                                     user_id="late-user", spend=0.5,
                                                                     metadata='{"tags": ["late"]}')
    assert await store.apply_spend([late]) == 1  # a journal replay writing a row of a closed day
    q = _query(tz, "key")
    assert yesterday.isoformat() not in await _used_stored(store, q)  # read from spend_logs meanwhile
    for dimension, value in (("key", "late-key"), ("team", "late-team"), ("user", "late-user"), ("tag", "late")):
        q = _query(tz, dimension)
        got = await usage.usage(store, ADMIN, q, top=100)
        _same(got, await _raw(store, q, 100, monkeypatch))
        assert {g.id: g.total.requests for g in got.groups}[value] == 1
    assert await daily.refresh(store, tz) == 1  # just that day
    assert await store.apply_spend([late]) == 0  # replayed again: nothing new, nothing recomputed
    assert await daily.refresh(store, tz) == 0
    for dimension, value in (("key", "late-key"), ("team", "late-team"), ("user", "late-user"), ("tag", "late")):
        q = _query(tz, dimension)
        assert yesterday.isoformat() in await _used_stored(store, q)
        got = await usage.usage(store, ADMIN, q, top=100)
        _same(got, await _raw(store, q, 100, monkeypatch))
        late_group = {g.id: g for g in got.groups}[value]
        assert late_group.total.requests == 1 and late_group.days[yesterday.isoformat()].requests == 1
    assert sum(g.total.requests for g in (await usage.usage(store, ADMIN, _query(tz, "key"), top=1000)).groups) \
        == len(records) + 1


async def test_a_timezone_change_does_not_mix_days(store, monkeypatch):
    await _seed(store, 400)
    utc, tokyo = zones.zone("UTC"), zones.zone("Asia/Tokyo")
    await daily.refresh(store, utc)
    q = _query(tokyo, "team")
    got = await usage.usage(store, ADMIN, q, top=100)
    # Tokyo's days are not UTC's: read raw until materialised (but for days without any spend)
    assert all(got.days[d].requests == 0 for d in await _used_stored(store, q))
    _same(got, await _raw(store, q, 100, monkeypatch))
    assert await daily.refresh(store, tokyo) >= DAYS - 1
    for tz in (utc, tokyo):
        for dimension in daily.DIMENSIONS:
            q = _query(tz, dimension)
            assert len(await _used_stored(store, q)) == DAYS + 1
            _same(await usage.usage(store, ADMIN, q, top=100), await _raw(store, q, 100, monkeypatch))
    async with store.sessions() as s:
        zones_kept = dict((await s.execute(select(daily.SpendDaily.tz, func.count()).group_by(daily.SpendDaily.tz)))
                          .all())
    assert set(zones_kept) == {"UTC", "Asia/Tokyo"}


async def test_internal_users_read_their_own_rows(store):
    records = await _seed(store, 200)
    tz = zones.zone("UTC")
    await daily.refresh(store, tz)
    me = Caller(id="user-1", role="internal_user", user_id="user-1")
    mine = await usage.usage(store, me, _query(tz, "key"), top=100)
    assert sum(g.total.requests for g in mine.groups) == len([r for r in records if r.user_id == "user-1"])


async def test_the_job_runs_rounds_and_stops(store, monkeypatch):
    import asyncio

    await _seed(store, 100)
    rounds: list[int] = []
    real = daily.refresh

    async def counted(*args, **kwargs):
        rounds.append(await real(*args, **kwargs))
        return rounds[-1]

    monkeypatch.setattr(daily, "refresh", counted)
    job = daily.DailyJob(store, zones.zone("UTC"), interval=0.01, first=0.0)
    job.start()
    try:
        for _ in range(500):
            if len(rounds) >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await job.close()
    assert job.task is None and rounds[0] >= DAYS - 1 and rounds[1] == 0
    last = zones.today(zones.zone("UTC")) - timedelta(days=1)
    async with store.sessions() as s:  # each round ends with the windows
        assert all([await windows.stored_totals(s, zones.zone("UTC"), n, last) for n in windows.WINDOWS])


@pytest.mark.parametrize("ui", [True, False])
async def test_the_gateway_runs_the_job_only_with_the_ui(tmp_path, ui):
    from lockgate import config
    from lockgate.gateway import Gateway

    settings = config.from_dict({"model_list": [], "general_settings": {
        "database_url": f"sqlite:///{tmp_path / 'gw.db'}", "ui": ui, "ui_timezone": "Asia/Tokyo"}})
    gw = Gateway(settings)
    await gw.start()
    try:
        if ui:
            assert gw.daily is not None and gw.daily.task is not None and not gw.daily.task.done()
            assert str(gw.daily.tz) == "Asia/Tokyo"
        else:
            assert gw.daily is None
    finally:
        await gw.close()
    assert gw.daily is None or gw.daily.task is None


# spend_window: the top keys of the ranges that end today (or yesterday) --------------------------------------


def _spy(monkeypatch) -> list[list[str] | None]:
    """What windows.ranked answered on each call (None: the window was not used)."""
    answers: list[list[str] | None] = []
    real = windows.ranked

    async def spied(*args, **kwargs):
        answers.append(await real(*args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(windows, "ranked", spied)
    return answers


def _window_ranges(tz):
    """The ranges a window covers: 7 and 30 days ending today, 6 and 29 ending yesterday."""
    today = zones.today(tz)
    yesterday = today - timedelta(days=1)
    return [usage.UsageQuery(today - timedelta(days=6), today, tz, "key"),
            usage.UsageQuery(today - timedelta(days=29), today, tz, "key"),
            usage.UsageQuery(yesterday - timedelta(days=5), yesterday, tz, "key"),
            usage.UsageQuery(yesterday - timedelta(days=28), yesterday, tz, "key")]


async def _check(store, monkeypatch, answers, q, top, windowed: bool) -> usage.Usage:
    """The page's answer equals the raw path's, read through a window or not as ``windowed`` says."""
    before = len(answers)
    got = await usage.usage(store, ADMIN, q, top=top)
    assert len(answers) == before + 1
    assert (answers[-1] is not None) == windowed, (q, answers[-1])
    _same(got, await _raw(store, q, top, monkeypatch))
    return got


def _today_record(tz, i: int, key: str, spend: float, minutes: int = 1) -> SpendRecord:
    when = max(datetime.now(UTC) - timedelta(minutes=minutes), zones.day_start(zones.today(tz), tz))
    return _record(random.Random(i), when, i, "today")._replace(api_key=key, spend=spend, status=200)


@pytest.mark.parametrize("tz_name", ["UTC", "America/New_York", "Asia/Kolkata"])
async def test_windows_give_the_raw_rows(store, tz_name, monkeypatch):
    await _seed(store)
    tz = zones.zone(tz_name)
    await daily.refresh(store, tz)
    assert await windows.refresh(store, tz) == len(windows.WINDOWS)
    assert await windows.refresh(store, tz) == 0  # nothing changed: nothing rebuilt
    answers = _spy(monkeypatch)
    for q in _window_ranges(tz):
        for top in (1, 3, 100):
            got = await _check(store, monkeypatch, answers, q, top, windowed=True)
            assert len([g for g in got.groups if g.id != usage.OTHER]) == min(top, 12)
    # a range no window covers, and other dimensions, read as before
    today = zones.today(tz)
    await _check(store, monkeypatch, answers, usage.UsageQuery(today - timedelta(days=4), today, tz, "key"), 3,
                 windowed=False)
    assert len(answers) == 4 * 3 + 1
    await usage.usage(store, ADMIN, usage.UsageQuery(today - timedelta(days=6), today, tz, "team"))
    assert len(answers) == 4 * 3 + 1
    # the window holds the sums of its stored days, per key and in total
    last = today - timedelta(days=1)
    async with store.sessions() as s:
        for n in windows.WINDOWS:
            days = windows.window_days(last, n)
            per_key = dict((await s.execute(
                select(daily.SpendDaily.value, func.sum(daily.SpendDaily.requests))
                .where(daily.SpendDaily.tz == tz_name, daily.SpendDaily.dimension == "key",
                       daily.SpendDaily.day.in_(days)).group_by(daily.SpendDaily.value))).all())
            kept = dict((await s.execute(
                select(windows.SpendWindow.value, windows.SpendWindow.requests)
                .where(windows.SpendWindow.tz == tz_name, windows.SpendWindow.days == n,
                       windows.SpendWindow.last_day == last.isoformat(), windows.SpendWindow.dimension == "key")))
                        .all())
            assert kept == per_key and len(kept) == 12
            stored = await daily.stored_days(s, tz, days)
            assert (await windows.stored_totals(s, tz, n, last))[0] == sum(m[0] for m in stored.values())


async def test_a_key_seen_only_today_and_keys_with_rows_today_are_ranked_with_the_window(store, monkeypatch):
    await _seed(store, 400)
    tz = zones.zone("Europe/Paris")
    await daily.refresh(store, tz)
    await windows.refresh(store, tz)
    answers = _spy(monkeypatch)
    q7, q30 = _window_ranges(tz)[:2]
    before = await _check(store, monkeypatch, answers, q7, 3, windowed=True)
    first, fourth = before.groups[0].id, (await usage.usage(store, ADMIN, q7, top=4)).groups[3].id
    # a key no closed day has seen, and the window's fourth key lifted to the top by a row of today
    assert await store.apply_spend([_today_record(tz, 1, "today-only-key", 0.25),
                                    _today_record(tz, 2, fourth, 0.5, minutes=2)]) == 2
    for q in (q7, q30):
        got = await _check(store, monkeypatch, answers, q, 3, windowed=True)
        assert [g.id for g in got.groups][:3] == [fourth, "today-only-key", first]
        assert set(got.groups[1].days) == {zones.today(tz).isoformat()}  # today only
        await _check(store, monkeypatch, answers, q, 100, windowed=True)


async def test_a_late_row_makes_the_windows_holding_its_day_untrusted_until_rebuilt(store, monkeypatch):
    await _seed(store, 300)
    tz = zones.zone("Asia/Kolkata")
    await daily.refresh(store, tz)
    await windows.refresh(store, tz)
    answers = _spy(monkeypatch)
    q7, q30 = _window_ranges(tz)[:2]
    ten_days_ago = zones.day_start(zones.today(tz) - timedelta(days=10), tz) + timedelta(hours=3)
    late = _record(random.Random(3), ten_days_ago, 77_777, "late")._replace(api_key="late-key", spend=5.0, status=200)
    assert await store.apply_spend([late]) == 1  # a journal replay writing a row of a closed day
    await _check(store, monkeypatch, answers, q30, 3, windowed=False)  # that day is read raw: no window
    await _check(store, monkeypatch, answers, q7, 3, windowed=True)  # its window does not hold that day
    assert await daily.refresh(store, tz) == 1
    # the day is stored again, but the 30-day window's totals still lack the row: not trusted
    got = await _check(store, monkeypatch, answers, q30, 3, windowed=False)
    assert got.groups[0].id == "late-key"
    assert await windows.refresh(store, tz) == 1  # just the window holding that day
    got = await _check(store, monkeypatch, answers, q30, 3, windowed=True)
    assert got.groups[0].id == "late-key" and got.groups[0].total.requests == 1
    await _check(store, monkeypatch, answers, q30, 100, windowed=True)
    # a window is never built from a day that is not trusted
    yesterday = zones.day_start(zones.today(tz) - timedelta(days=1), tz) + timedelta(hours=1)
    assert await store.apply_spend([late._replace(request_id="late-2", start_time=utc_text(yesterday),
                                                  end_time=utc_text(yesterday))]) == 1
    assert not await windows.build(store, tz, 6, zones.today(tz) - timedelta(days=1))
    await _check(store, monkeypatch, answers, q7, 3, windowed=False)
    assert await windows.refresh(store, tz) == 0  # its days are not trusted yet: nothing rebuilt
    assert await daily.refresh(store, tz) == 1 and await windows.refresh(store, tz) == 2
    await _check(store, monkeypatch, answers, q7, 3, windowed=True)


async def test_a_change_of_day_reads_raw_until_the_new_windows_are_built(store, monkeypatch):
    await _seed(store, 300)
    tz = zones.zone("UTC")
    await daily.refresh(store, tz)
    await windows.refresh(store, tz)
    answers = _spy(monkeypatch)
    real_today = zones.today

    def tomorrow(tz, now=None):
        return real_today(tz, now) + timedelta(days=1)

    monkeypatch.setattr(zones, "today", tomorrow)  # midnight has passed: today's rows are a closed day
    q7, q30, y6, _ = _window_ranges(tz)
    for q in (q7, q30, y6):
        await _check(store, monkeypatch, answers, q, 3, windowed=False)
    assert await daily.refresh(store, tz) == 1
    assert await windows.refresh(store, tz) == 2
    for q in (q7, q30, y6):  # the new "today" has no rows yet: the window's own top keys
        for top in (3, 100):
            await _check(store, monkeypatch, answers, q, top, windowed=True)
    async with store.sessions() as s:  # the windows of the day before are gone
        kept = (await s.execute(select(windows.SpendWindow.days, windows.SpendWindow.last_day)
                                .where(windows.SpendWindow.tz == "UTC").distinct())).all()
    assert sorted(kept) == [(n, real_today(tz).isoformat()) for n in windows.WINDOWS]


async def test_a_negative_spend_today_is_read_without_the_window(store, monkeypatch):
    await _seed(store, 200)
    tz = zones.zone("UTC")
    await daily.refresh(store, tz)
    await windows.refresh(store, tz)
    answers = _spy(monkeypatch)
    q7 = _window_ranges(tz)[0]
    await _check(store, monkeypatch, answers, q7, 3, windowed=True)
    assert await store.apply_spend([_today_record(tz, 5, "refund-key", -0.5)]) == 1
    await _check(store, monkeypatch, answers, q7, 3, windowed=False)
