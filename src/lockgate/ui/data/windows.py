"""``spend_window``: the last ``n`` closed local days of ``spend_daily`` summed per key (``n`` in ``WINDOWS``: the
closed days of the usage page's 7- and 30-day ranges that end today), so its top keys by spend are a walk of one
index instead of a sort of every stored day (100,000 keys used evenly leave ~28,000 stored rows a day).

Built by the gateway's spend_daily job (``daily.DailyJob``, only with the UI on) after each round of days: a
window is rebuilt when the one ending yesterday is missing (the day changed) or its totals (dimension ``day``,
value ``''``) differ from the exact totals of ``spend_rollup`` for its days (a late row, a retention job).  One
transaction: delete the zone's window of that length, check that every one of its days is trusted in
spend_daily (stored totals equal the rollup's), insert the totals, then one grouped insert-select from
spend_daily.  On SQLite the delete comes first so that the transaction holds the write lock while it reads; on
PostgreSQL it is one ``REPEATABLE READ`` snapshot under the job's advisory lock, and a round that rebuilt a
window ends with ``ANALYZE spend_daily, spend_window`` (once a day: the readers' index plans do not wait for
autovacuum).

Readers (``ranked``) use a window only when it holds exactly the closed days of the range, each of them is
trusted, and its totals equal the rollup's at read time; then the top keys of the range are among the window's
top keys and the keys with spend rows on the range's other days (today): one query adds those rows to the
window and ranks them.  Everything else (the per-day figures, the totals, the rest) is read as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta, tzinfo
from typing import Any

from sqlalchemy import Integer, String, and_, delete, func, insert, literal, select, text, union_all
from sqlalchemy.sql.elements import ColumnElement

from ...state.models import SpendDaily, SpendLog, SpendWindow
from ...state.store import SQLStore
from . import daily, zones

WINDOWS = (6, 29)  # closed days summed: the 7- and 30-day ranges ending today (6 and 29 days ending yesterday)
DIMENSION = "key"
_COLUMNS = ["tz", "days", "last_day", "dimension", "value", "requests", "spend", "prompt_tokens", "completion_tokens"]


def window_days(last: date, n: int) -> list[str]:
    """The ``n`` local days ending ``last``, oldest first."""
    return [(last - timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def covering(first: date, last: date, tz: tzinfo) -> tuple[int, date] | None:
    """(length, last day) of the window that holds exactly the closed days of ``first`` .. ``last``, if any."""
    yesterday = zones.today(tz) - timedelta(days=1)
    if not first <= yesterday <= last:
        return None
    n = (yesterday - first).days + 1
    return (n, yesterday) if n in WINDOWS else None


def total(measures: Iterable[daily.Measures | None]) -> daily.Measures:
    requests, spend, prompt, completion = 0, 0.0, 0, 0
    for m in measures:
        if m is not None:
            requests, spend, prompt, completion = requests + m[0], spend + m[1], prompt + m[2], completion + m[3]
    return requests, spend, prompt, completion


def _mine(tz: tzinfo, n: int, last: date) -> list[ColumnElement[bool]]:
    return [SpendWindow.tz == daily.tz_name(tz), SpendWindow.days == n, SpendWindow.last_day == last.isoformat()]


async def stored_totals(s: Any, tz: tzinfo, n: int, last: date) -> daily.Measures | None:
    """The totals the window of ``n`` days ending ``last`` holds (None when there is none)."""
    stmt = (select(SpendWindow.requests, SpendWindow.spend, SpendWindow.prompt_tokens, SpendWindow.completion_tokens)
            .where(*_mine(tz, n, last), SpendWindow.dimension == daily.TOTAL, SpendWindow.value == ""))
    row = (await s.execute(stmt)).first()
    return None if row is None else (int(row[0]), float(row[1]), int(row[2]), int(row[3]))


async def build(store: SQLStore, tz: tzinfo, n: int, last: date) -> bool:
    """Rebuild the zone's window of ``n`` days, ending ``last``, from spend_daily in one transaction.  False (and
    nothing changed) when one of its days is not trusted in spend_daily, or another instance holds the lock."""
    days = window_days(last, n)
    name, text_last = daily.tz_name(tz), last.isoformat()
    async with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin() as tx:
            if store.dialect == "postgresql":
                got = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": daily.PG_LOCK})).scalar()
                if not got:
                    return False
            # first (see the module's docstring): on SQLite this write takes the lock before the reads below
            await conn.execute(delete(SpendWindow).where(SpendWindow.tz == name, SpendWindow.days == n))
            exact = await daily.rollup_days(conn, store.dialect, tz, date.fromisoformat(days[0]), last)
            if await daily.trusted_days(conn, store.dialect, tz, days, exact) != set(days):
                await tx.rollback()
                return False
            requests, spend, prompt, completion = total((await daily.stored_days(conn, tz, days)).values())
            await conn.execute(insert(SpendWindow).values(
                tz=name, days=n, last_day=text_last, dimension=daily.TOTAL, value="", requests=requests, spend=spend,
                prompt_tokens=prompt, completion_tokens=completion))
            rows = (select(literal(name, String), literal(n, Integer), literal(text_last, String),
                           literal(DIMENSION, String), SpendDaily.value, func.sum(SpendDaily.requests),
                           func.sum(SpendDaily.spend), func.sum(SpendDaily.prompt_tokens),
                           func.sum(SpendDaily.completion_tokens))
                    .where(SpendDaily.tz == name, SpendDaily.dimension == DIMENSION, SpendDaily.day.in_(days))
                    .group_by(SpendDaily.value))
            await conn.execute(insert(SpendWindow).from_select(_COLUMNS, rows))
    return True


async def refresh(store: SQLStore, tz: tzinfo) -> int:
    """One round: rebuild each window ending yesterday that is missing or whose totals differ from the rollup's
    (run after ``daily.refresh``, which makes its days trusted).  Returns how many were rebuilt."""
    last = zones.today(tz) - timedelta(days=1)
    async with store.sessions() as s:
        exact = await daily.rollup_days(s, store.dialect, tz, last - timedelta(days=max(WINDOWS) - 1), last)
        kept = {n: await stored_totals(s, tz, n, last) for n in WINDOWS}
    done = 0
    for n in WINDOWS:
        have = kept[n]
        if have is not None and daily.same(have, total(exact.get(d) for d in window_days(last, n))):
            continue
        if await build(store, tz, n, last):
            done += 1
    if done and store.dialect == "postgresql":  # fresh statistics for the readers' plans, whatever autovacuum does
        async with store.engine.connect() as conn:
            await conn.execute(text("ANALYZE spend_daily, spend_window"))
            await conn.commit()
    return done


async def ranked(s: Any, tz: tzinfo, first: date, last: date, stored: set[str], exact: dict[str, daily.Measures],
                 raw: ColumnElement[bool] | None, top: int) -> list[str] | None:
    """The top ``top`` keys by spend of ``first`` .. ``last`` (a reader of every row), ties by key, from the window
    of its closed days plus the spend rows ``raw`` (its other days); None when no window can be trusted: none
    holds exactly its closed days, one of them is not in ``stored`` (the days trusted in spend_daily), the
    window's totals differ from ``exact`` (the rollup's per-day totals), or a spend row of ``raw`` is negative.

    Exact because spend is never negative: a key with no row in ``raw`` ranks by its window spend, so it is
    beaten by each of the window's top keys, which have at least their window spend."""
    found = covering(first, last, tz)
    if found is None:
        return None
    n, end = found
    days = window_days(end, n)
    if not set(days) <= stored:
        return None
    have = await stored_totals(s, tz, n, end)
    if have is None or not daily.same(have, total(exact.get(d) for d in days)):
        return None
    mine = [*_mine(tz, n, end), SpendWindow.dimension == DIMENSION]
    best = select(SpendWindow.value, SpendWindow.spend).where(*mine)
    if raw is None:
        stmt = best.order_by(SpendWindow.spend.desc(), SpendWindow.value).limit(top)
        return [str(r[0]) for r in (await s.execute(stmt)).all()]
    other = (select(SpendLog.api_key.label("value"), func.coalesce(func.sum(SpendLog.spend), 0.0).label("spend"),
                    func.min(SpendLog.spend).label("least"))
             .where(raw, SpendLog.api_key.is_not(None)).group_by(SpendLog.api_key).cte("other_days"))
    added = (select(other.c.value, (other.c.spend + func.coalesce(SpendWindow.spend, 0.0)).label("spend"))
             .select_from(other.outerjoin(SpendWindow, and_(*mine, SpendWindow.value == other.c.value))))
    top_window = best.order_by(SpendWindow.spend.desc(), SpendWindow.value).limit(top).subquery("top_window")
    alone = (select(top_window.c.value, top_window.c.spend)
             .where(top_window.c.value.not_in(select(other.c.value))))
    both = union_all(added, alone).subquery("both")
    least = select(func.min(other.c.least)).scalar_subquery()
    rows = (await s.execute(select(both.c.value, least).order_by(both.c.spend.desc(), both.c.value)
                            .limit(top))).all()
    if rows and rows[0][1] is not None and rows[0][1] < 0:
        return None
    return [str(r[0]) for r in rows]
