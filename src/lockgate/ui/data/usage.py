"""Usage per day in the declared timezone: spend, tokens and requests, in total and by key, team, user,
model or tag; a CSV export streamed from a server-side cursor.

Day totals are sums of the ``spend_logs`` rows whose ``start_time`` falls in the local day's UTC interval,
so for every day they equal the sum of ``/spend/logs?start_date=<day start>&end_date=<day end>`` (the
intervals come from ``zones.day_range``).  Rows by tag: each tag of ``metadata.tags`` counts the row once
(a row with two tags is in both; a row with none in no tag group).  For readers of every row, breakdowns by
key, team, user or tag read each closed day from ``spend_daily`` when it holds that day completely (its
totals equal spend_rollup's; ``daily.py``) and every other day from ``spend_logs``: the same results.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from ...admin.auth import Caller
from ...errors import BadRequest
from ...state.models import Key, SpendDaily, SpendLog, SpendRollup
from ...state.store import SQLStore
from . import daily, windows, zones
from .scope import spend_conditions

DIMENSIONS = ("key", "team", "user", "model", "tag")
MAX_DAYS = 366
TOP = 10
OTHER = "(other)"


@dataclass
class UsageQuery:
    first: date
    last: date  # inclusive
    tz: tzinfo
    group_by: str | None = None  # one of DIMENSIONS

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise BadRequest("the end date is before the start date", param="end_date")
        if (self.last - self.first).days >= MAX_DAYS:
            raise BadRequest(f"at most {MAX_DAYS} days at a time", param="start_date")
        if self.group_by is not None and self.group_by not in DIMENSIONS:
            raise BadRequest(f"group_by must be one of {', '.join(DIMENSIONS)}", param="group_by")

    @property
    def days(self) -> list[str]:
        return [(self.first + timedelta(days=i)).isoformat() for i in range((self.last - self.first).days + 1)]


@dataclass
class Totals:
    spend: float = 0.0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Totals) -> None:
        self.spend += other.spend
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass
class Group:
    id: str  # the key's token hash, team id, user id, model group, tag, or OTHER
    label: str  # what people read (a key's alias or masked name)
    total: Totals = field(default_factory=Totals)
    days: dict[str, Totals] = field(default_factory=dict)


@dataclass
class Usage:
    query: UsageQuery
    days: dict[str, Totals]  # every day of the range, zeros included
    groups: list[Group]  # the top groups by spend, then OTHER for the rest (not for tags)

    @property
    def total(self) -> Totals:
        out = Totals()
        for t in self.days.values():
            out.add(t)
        return out


def _totals(row: Any) -> Totals:
    return Totals(float(row[0] or 0), int(row[1] or 0), int(row[2] or 0), int(row[3] or 0))


class _Plan:
    """The pieces of SQL the usage queries of one ``UsageQuery`` share, over ``spend_logs`` or, for callers
    who read every row (admins), over ``spend_rollup`` where the query needs no other dimension than the
    model group (15-minute buckets: every local day is a whole number of them)."""

    def __init__(self, store: SQLStore, caller: Caller, q: UsageQuery, rolled: bool) -> None:
        self.start, self.end = zones.day_range(q.first, q.last, q.tz)
        self.rolled = rolled and caller.reads_all
        self.dialect = store.dialect
        time_column = SpendRollup.bucket if self.rolled else SpendLog.start_time
        self.day = zones.local_day(time_column, store.dialect, q.tz, self.start, self.end).label("day")
        self.visible = [] if self.rolled else spend_conditions(caller)
        self.where = [*self.visible,
                      time_column >= self.start.replace(tzinfo=None), time_column < self.end.replace(tzinfo=None)]

    @property
    def measures(self) -> list[ColumnElement[Any]]:
        if self.rolled:
            return [func.coalesce(func.sum(SpendRollup.spend), 0.0), func.coalesce(func.sum(SpendRollup.requests), 0),
                    func.coalesce(func.sum(SpendRollup.prompt_tokens), 0),
                    func.coalesce(func.sum(SpendRollup.completion_tokens), 0)]
        return [func.coalesce(func.sum(SpendLog.spend), 0.0), func.count(),
                func.coalesce(func.sum(SpendLog.prompt_tokens), 0), func.coalesce(func.sum(SpendLog.completion_tokens), 0)]

    @property
    def spend(self) -> ColumnElement[Any]:
        return func.sum(SpendRollup.spend if self.rolled else SpendLog.spend)

    def dimension(self, name: str) -> tuple[ColumnElement[Any], Any]:
        """(the group column, the FROM item to add for it or None)."""
        if name == "tag":
            if self.dialect == "postgresql":
                tags = func.json_array_elements_text(
                    func.json_extract_path(SpendLog.metadata_, "tags")).table_valued("value").lateral("tags")
            else:
                tags = func.json_each(SpendLog.metadata_, "$.tags").table_valued("value").alias("tags")
            return tags.c.value, tags
        if self.rolled:
            return SpendRollup.model_group.expression, None
        column = {"key": SpendLog.api_key, "team": SpendLog.team_id, "user": SpendLog.user_id,
                  "model": SpendLog.model_group}[name]
        return column.expression, None

    def select(self, *columns: ColumnElement[Any], extra: Any = None,
               rows: ColumnElement[bool] | None = None) -> Select[Any]:
        """``rows``: the spend_logs time condition instead of the whole range (some of its days only)."""
        stmt = select(*columns, *self.measures).select_from(SpendRollup if self.rolled else SpendLog)
        if extra is not None:
            stmt = stmt.join(extra, _true())
        return stmt.where(*self.where) if rows is None else stmt.where(*self.visible, rows)


def _true() -> ColumnElement[bool]:
    from sqlalchemy import true

    return true()


async def usage(store: SQLStore, caller: Caller, q: UsageQuery, top: int = TOP) -> Usage:
    """Day totals for the range and, with ``group_by``, the top ``top`` groups by spend, per day."""
    plan = _Plan(store, caller, q, rolled=True)
    days = {d: Totals() for d in q.days}
    groups: list[Group] = []
    async with store.sessions() as s:
        for row in (await s.execute(plan.select(plan.day).group_by(plan.day))).all():
            if row[0] in days:
                days[row[0]] = _totals(row[1:])
        if q.group_by is not None:
            plan = _Plan(store, caller, q, rolled=q.group_by == "model")
            column, extra = plan.dimension(q.group_by)
            stored: set[str] = set()
            exact = {d: (t.requests, t.spend, t.prompt_tokens, t.completion_tokens) for d, t in days.items()}
            if q.group_by in daily.DIMENSIONS and caller.reads_all:  # closed days from spend_daily
                stored = await daily.trusted_days(s, store.dialect, q.tz, q.days, exact)
            if stored:
                raw_days = _raw_days(plan, q, stored)
                ids: list[str] | None = None
                if q.group_by == windows.DIMENSION:  # the closed days' top keys from spend_window
                    ids = await windows.ranked(s, q.tz, q.first, q.last, stored, exact, raw_days, top)
                if ids is None:
                    ids = await _ranked_stored(s, plan, q, column, extra, stored, raw_days, top)
                groups = await _groups_stored(s, plan, q, column, extra, stored, raw_days, ids)
            else:
                stmt = plan.select(column, extra=extra).where(column.is_not(None)).group_by(column)
                ranked = (await s.execute(stmt.order_by(plan.spend.desc(), column).limit(top))).all()
                groups = [Group(str(r[0]), str(r[0]), _totals(r[1:])) for r in ranked]
                if groups:
                    ids = [g.id for g in groups]
                    per_day = (plan.select(plan.day, column, extra=extra).where(column.in_(ids))
                               .group_by(plan.day, column))
                    by_id = {g.id: g for g in groups}
                    for row in (await s.execute(per_day)).all():
                        by_id[str(row[1])].days[row[0]] = _totals(row[2:])
            if q.group_by == "key" and groups:
                await _label_keys(s, groups)
    if q.group_by is not None and q.group_by != "tag":
        other = _other(days, groups)
        if other.total.requests:
            groups.append(other)
    return Usage(q, days, groups)


def _raw_days(plan: _Plan, q: UsageQuery, stored: set[str]) -> ColumnElement[bool] | None:
    """The spend_logs rows of the days of ``q`` not read from spend_daily (runs of days, one interval each);
    None when every day is stored."""
    runs: list[list[date]] = []
    for text_day in q.days:
        if text_day in stored:
            continue
        d = date.fromisoformat(text_day)
        if runs and runs[-1][1] + timedelta(days=1) == d:
            runs[-1][1] = d
        else:
            runs.append([d, d])
    if not runs:
        return None
    conditions = []
    for first, last in runs:
        lo, hi = zones.day_range(first, last, q.tz)
        conditions.append(and_(SpendLog.start_time >= lo.replace(tzinfo=None), SpendLog.start_time < hi.replace(tzinfo=None)))
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def _stored_part(q: UsageQuery, stored: set[str]) -> list[ColumnElement[bool]]:
    return [SpendDaily.tz == daily.tz_name(q.tz), SpendDaily.dimension == q.group_by,
            SpendDaily.day.in_(sorted(stored))]


async def _ranked_stored(s: Any, plan: _Plan, q: UsageQuery, column: ColumnElement[Any], extra: Any,
                         stored: set[str], raw_days: ColumnElement[bool] | None, top: int) -> list[str]:
    """The top groups by spend: the ``stored`` (closed, complete) days from spend_daily, the others
    (``raw_days``) from spend_logs; each day from exactly one of them (ui/data/daily.py).  The ranking reads
    the spend alone (the narrowest sort of the stored rows)."""
    stored_part: Any = select(SpendDaily.value.label("value"), SpendDaily.spend.label("spend")).where(
        *_stored_part(q, stored))
    if raw_days is not None:  # the columns of the union are named after the first part's
        raw: Any = (select(column, func.sum(SpendLog.spend)).select_from(SpendLog)
                    .where(*plan.visible, raw_days, column.is_not(None)).group_by(column))
        if extra is not None:
            raw = raw.join(extra, _true())
        both = union_all(stored_part, raw).subquery()
    else:
        both = stored_part.subquery()
    spend = func.sum(both.c.spend)
    ranked = select(both.c.value).group_by(both.c.value).order_by(spend.desc(), both.c.value).limit(top)
    return [str(r[0]) for r in (await s.execute(ranked)).all()]


async def _groups_stored(s: Any, plan: _Plan, q: UsageQuery, column: ColumnElement[Any], extra: Any,
                         stored: set[str], raw_days: ColumnElement[bool] | None, ids: list[str]) -> list[Group]:
    """The groups ``ids`` (ranked) and their days, read as ``_ranked_stored`` ranks them; a group's totals are
    the sums of its days."""
    groups = [Group(i, i) for i in ids]
    if not groups:
        return groups
    mine = _stored_part(q, stored)
    by_id = {g.id: g for g in groups}
    stmt = select(SpendDaily.day, SpendDaily.value, SpendDaily.spend, SpendDaily.requests, SpendDaily.prompt_tokens,
                  SpendDaily.completion_tokens).where(*mine, SpendDaily.value.in_(ids))
    rows = list((await s.execute(stmt)).all())
    if raw_days is not None:
        per_day = (plan.select(plan.day, column, extra=extra, rows=raw_days).where(column.in_(ids))
                   .group_by(plan.day, column))
        rows += (await s.execute(per_day)).all()
    for row in sorted(rows, key=lambda r: r[0]):
        g = by_id[str(row[1])]
        g.days[row[0]] = _totals(row[2:])
        g.total.add(g.days[row[0]])
    return groups


def _other(days: dict[str, Totals], groups: list[Group]) -> Group:
    """What the top groups leave of each day (rows of other groups, and rows without the dimension)."""
    other = Group(OTHER, OTHER)
    for day, total in days.items():
        rest = Totals(total.spend, total.requests, total.prompt_tokens, total.completion_tokens)
        for g in groups:
            t = g.days.get(day)
            if t is not None:
                rest.spend -= t.spend
                rest.requests -= t.requests
                rest.prompt_tokens -= t.prompt_tokens
                rest.completion_tokens -= t.completion_tokens
        if rest.requests:
            other.days[day] = rest
            other.total.add(rest)
    return other


async def _label_keys(s: Any, groups: list[Group]) -> None:
    result = await s.execute(select(Key.token_hash, Key.key_alias, Key.key_name)
                             .where(Key.token_hash.in_([g.id for g in groups])))
    for token_hash, alias, name in result.all():
        for g in groups:
            if g.id == token_hash:
                g.label = alias or name
    for g in groups:
        if g.label == g.id:
            g.label = f"{g.id[:8]}… (deleted key)"


async def csv_lines(store: SQLStore, caller: Caller, q: UsageQuery) -> AsyncIterator[str]:
    """The CSV export: one line per day (and group), streamed from a server-side cursor, 500 rows a chunk."""
    name = q.group_by
    plan = _Plan(store, caller, q, rolled=name in (None, "model"))
    head = ["day", *([name] if name else []), *(["key_alias"] if name == "key" else []),
            "spend", "requests", "prompt_tokens", "completion_tokens"]
    columns: list[ColumnElement[Any]] = [plan.day]
    extra = None
    if name is not None:
        column, extra = plan.dimension(name)
        columns.append(column)
    stmt = plan.select(*columns, extra=extra).group_by(*columns).order_by(*columns)
    if name == "key":
        inner = stmt.subquery()
        stmt = (select(inner.c.day, inner.c.api_key, func.coalesce(Key.key_alias, Key.key_name),
                       *list(inner.c)[2:])
                .select_from(inner).outerjoin(Key, Key.token_hash == inner.c.api_key)
                .order_by(inner.c.day, inner.c.api_key))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    yield buffer.getvalue()
    async with store.sessions() as s:
        result = await s.stream(stmt.execution_options(yield_per=500))
        async for chunk in result.partitions(500):
            buffer.seek(0)
            buffer.truncate()
            for row in chunk:
                values = list(row)
                values[-4] = repr(float(values[-4] or 0.0))  # spend: every digit, so sums reconcile
                writer.writerow(values)
            yield buffer.getvalue()
