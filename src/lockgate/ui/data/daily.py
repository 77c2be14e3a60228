"""``spend_daily``: closed local days of ``spend_logs`` summed per (timezone, day, dimension, value), so the
usage page's breakdown by key, team, user or tag reads a few thousand rows a day instead of every spend row.

Nothing on the request path nor in the spend writer: a background job of the gateway (started only when the
UI is on, ``DailyJob``) looks at the last ``WINDOW`` closed days of the declared timezone every ~60 s and
recomputes, from ``spend_logs`` in one transaction (delete, then one grouped insert-select per dimension),
each day whose stored totals (dimension ``day``, value ``''``) differ from the exact per-day totals of
``spend_rollup``: a day not done yet, or one that got rows late (a journal replay) or lost some (retention).

Readers (``usage``) trust a stored day only when its totals equal the rollup's at read time, and otherwise
read that day's rows from ``spend_logs``: a day is counted from one source or the other, never both.  The
totals row is inserted first: a row committed after its snapshot makes the totals differ from the rollup,
so the day is read raw and recomputed on the next round (on PostgreSQL the transaction is also one
``REPEATABLE READ`` snapshot, and a transaction-scoped advisory lock keeps instances from doing the same
work at once; on SQLite each instance simply does it idempotently).  After each round the job rebuilds the
windows of closed days by key that no longer match (``windows.py``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from datetime import date, timedelta, tzinfo
from typing import Any

from sqlalchemy import String, case, delete, func, insert, literal, select, text, true
from sqlalchemy.sql.elements import ColumnElement

from ...state.models import SpendDaily, SpendLog, SpendRollup
from ...state.store import SQLStore
from . import zones

log = logging.getLogger("lockgate.ui.daily")

DIMENSIONS = ("key", "team", "user", "tag")
TOTAL = "day"  # the day's totals: dimension "day", value ""
WINDOW = 35  # closed days looked at by each round
INTERVAL = 60.0  # seconds between rounds (jittered)
PG_LOCK = 0x6C6F636B_64617931  # pg_try_advisory_xact_lock key ("lockday1"), windows.py takes it too

Measures = tuple[int, float, int, int]  # requests, spend, prompt tokens, completion tokens


def tz_name(tz: tzinfo) -> str:
    return str(tz)


def same(a: Measures, b: Measures) -> bool:
    """Totals agree: counts exactly, spend to float rounding (the rollup adds it in another order)."""
    return a[0] == b[0] and a[2] == b[2] and a[3] == b[3] and math.isclose(a[1], b[1], rel_tol=1e-9, abs_tol=1e-9)


def dimension_column(name: str, dialect: str) -> tuple[ColumnElement[Any], Any]:
    """(the spend_logs column grouped by, the FROM item to join for it or None): as usage.py reads them."""
    if name == "tag":
        if dialect == "postgresql":
            tags = func.json_array_elements_text(
                func.json_extract_path(SpendLog.metadata_, "tags")).table_valued("value").lateral("tags")
        else:
            tags = func.json_each(SpendLog.metadata_, "$.tags").table_valued("value").alias("tags")
        return tags.c.value, tags
    column = {"key": SpendLog.api_key, "team": SpendLog.team_id, "user": SpendLog.user_id}[name]
    return column.expression, None


async def rollup_days(s: Any, dialect: str, tz: tzinfo, first: date, last: date) -> dict[str, Measures]:
    """The exact per-day totals of ``first`` .. ``last`` from spend_rollup (days without rows left out)."""
    start, end = zones.day_range(first, last, tz)
    day = zones.local_day(SpendRollup.bucket, dialect, tz, start, end).label("day")
    stmt = (select(day, func.sum(SpendRollup.requests), func.sum(SpendRollup.spend),
                   func.sum(SpendRollup.prompt_tokens), func.sum(SpendRollup.completion_tokens))
            .where(SpendRollup.bucket >= start.replace(tzinfo=None), SpendRollup.bucket < end.replace(tzinfo=None))
            .group_by(day))
    return {r[0]: (int(r[1] or 0), float(r[2] or 0), int(r[3] or 0), int(r[4] or 0))
            for r in (await s.execute(stmt)).all() if r[1]}


async def stored_days(s: Any, tz: tzinfo, days: list[str]) -> dict[str, Measures]:
    """The totals spend_daily holds for ``days`` (days not materialised left out)."""
    if not days:
        return {}
    stmt = (select(SpendDaily.day, SpendDaily.requests, SpendDaily.spend, SpendDaily.prompt_tokens,
                   SpendDaily.completion_tokens)
            .where(SpendDaily.tz == tz_name(tz), SpendDaily.dimension == TOTAL, SpendDaily.day.in_(days)))
    return {r[0]: (int(r[1]), float(r[2]), int(r[3]), int(r[4])) for r in (await s.execute(stmt)).all()}


def closed(tz: tzinfo, days: list[str]) -> list[str]:
    today = zones.today(tz).isoformat()
    return [d for d in days if d < today]


async def trusted_days(s: Any, dialect: str, tz: tzinfo, days: list[str],
                       exact: dict[str, Measures] | None = None) -> set[str]:
    """The closed days of ``days`` whose spend_daily rows are complete: stored totals equal the rollup's
    (``exact``: the rollup's per-day totals when the caller has them).  A day with no spend at all is trusted
    too (nothing to read either way)."""
    candidates = closed(tz, days)
    if not candidates:
        return set()
    if exact is None:
        exact = await rollup_days(s, dialect, tz, date.fromisoformat(candidates[0]), date.fromisoformat(candidates[-1]))
    stored = await stored_days(s, tz, candidates)
    out = set()
    for d in candidates:
        want = exact.get(d)
        have = stored.get(d)
        empty = (want is None or want[0] == 0) and have is None  # no spend: nothing to read either way
        if empty or (want is not None and have is not None and same(want, have)):
            out.add(d)
    return out


def _measures() -> list[ColumnElement[Any]]:
    return [func.count(), func.coalesce(func.sum(case((SpendLog.status >= 400, 1), else_=0)), 0),
            func.coalesce(func.sum(SpendLog.spend), 0.0), func.coalesce(func.sum(SpendLog.prompt_tokens), 0),
            func.coalesce(func.sum(SpendLog.completion_tokens), 0)]


async def materialise(store: SQLStore, tz: tzinfo, day: date) -> bool:
    """Recompute one closed local day from spend_logs in one transaction.  False when another instance holds
    the PostgreSQL lock (it is doing the same work)."""
    start, end = zones.day_range(day, day, tz)
    lo, hi = start.replace(tzinfo=None), end.replace(tzinfo=None)
    name, text_day = tz_name(tz), day.isoformat()
    target = ["tz", "dimension", "day", "value", "requests", "errors", "spend", "prompt_tokens", "completion_tokens"]
    async with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            if store.dialect == "postgresql":
                got = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PG_LOCK})).scalar()
                if not got:
                    return False
            await conn.execute(delete(SpendDaily).where(SpendDaily.tz == name, SpendDaily.day == text_day))
            for dimension in (TOTAL, *DIMENSIONS):  # the totals first (see the module's docstring)
                if dimension == TOTAL:
                    column: ColumnElement[Any] = literal("", String)
                    extra = None
                else:
                    column, extra = dimension_column(dimension, store.dialect)
                stmt = select(literal(name, String), literal(dimension, String), literal(text_day, String),
                              column, *_measures()).select_from(SpendLog)
                if extra is not None:
                    stmt = stmt.join(extra, true())
                stmt = stmt.where(SpendLog.start_time >= lo, SpendLog.start_time < hi)
                if dimension != TOTAL:
                    stmt = stmt.where(column.is_not(None)).group_by(column)
                else:
                    stmt = stmt.having(func.count() > 0)
                await conn.execute(insert(SpendDaily).from_select(target, stmt))
    return True


async def refresh(store: SQLStore, tz: tzinfo, window: int = WINDOW) -> int:
    """One round: recompute each of the last ``window`` closed days that is missing or out of date.
    Returns how many days were recomputed."""
    today = zones.today(tz)
    days = [(today - timedelta(days=i)).isoformat() for i in range(window, 0, -1)]
    async with store.sessions() as s:
        good = await trusted_days(s, store.dialect, tz, days)
    done = 0
    for d in days:
        if d in good:
            continue
        if not await materialise(store, tz, date.fromisoformat(d)):
            break  # another instance is at it
        done += 1
        await asyncio.sleep(0.05)  # let the spend writer in between days
    return done


class DailyJob:
    """The gateway's background task (``Gateway.start`` with the UI on and a database): ``refresh``, then
    ``windows.refresh`` (the windows of closed days by key), every ~``interval`` seconds, jittered, the first round one to three minutes after start-up (not while a
    gateway that was just started, or is soon stopped, is busy with its first requests or its drain)."""

    def __init__(self, store: SQLStore, tz: tzinfo, interval: float = INTERVAL, first: float = 60.0) -> None:
        self.store = store
        self.tz = tz
        self.interval = interval
        self.first = first  # the first round: between first and 3 * first seconds after start-up
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="lockgate-spend-daily")

    async def _run(self) -> None:
        await asyncio.sleep(random.uniform(self.first, 3 * self.first))
        while True:
            try:
                done = await refresh(self.store, self.tz)
                if done:
                    log.info("spend_daily: %d closed day(s) materialised", done)
                from . import windows  # here: windows.py imports this module

                built = await windows.refresh(self.store, self.tz)
                if built:
                    log.info("spend_window: %d window(s) of closed days rebuilt", built)
            except asyncio.CancelledError:
                raise
            except Exception:  # logged; the next round tries again, readers fall back meanwhile
                log.warning("spend_daily: materialising closed days failed", exc_info=True)
            await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))

    async def close(self) -> None:
        if self.task is not None:
            from ...background import stop

            await stop([self.task])
            self.task = None
