"""Spend logs for the logs page: keyset pages (newest first), filters, one request's detail.

A page is ``ORDER BY start_time DESC, request_id DESC LIMIT n+1`` after the cursor's row: its cost does not
grow with the page number, and no page counts the whole table.  It walks the ``start_time`` index newest
first; an internal user's rows come from ``(user_id, start_time)`` (migration 0005).  Other filters (key,
team, model, status) are applied along the walk: a filter that matches few rows reads further back (use a
time range on very large tables; docs/ui.md "Scale").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from ...admin.auth import Caller, token_hash_of
from ...errors import BadRequest
from ...state.models import Key, SpendLog
from ...state.store import SQLStore
from . import cursor as cursors
from .scope import may_read_row, spend_conditions

MAX_PAGE = 200
STATUSES = ("success", "error")


@dataclass
class LogFilters:
    key: str | None = None  # a raw key or its token hash
    team_id: str | None = None
    user_id: str | None = None
    model: str | None = None  # the model group clients asked for
    status: str | None = None  # "success" (< 400), "error" (>= 400) or one HTTP status
    start: datetime | None = None  # UTC, inclusive
    end: datetime | None = None  # UTC, exclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.key:
            out.append(SpendLog.api_key == token_hash_of(self.key))
        if self.team_id:
            out.append(SpendLog.team_id == self.team_id)
        if self.user_id:
            out.append(SpendLog.user_id == self.user_id)
        if self.model:
            out.append(SpendLog.model_group == self.model)
        if self.status:
            out.append(status_condition(self.status))
        if self.start is not None:
            out.append(SpendLog.start_time >= self.start)
        if self.end is not None:
            out.append(SpendLog.start_time < self.end)
        return out


def status_condition(status: str) -> ColumnElement[bool]:
    if status == "success":
        return SpendLog.status < 400
    if status == "error":
        return SpendLog.status >= 400
    if status.isdigit() and 100 <= int(status) <= 599:
        return SpendLog.status == int(status)
    raise BadRequest("status must be success, error or an HTTP status code", param="status")


@dataclass
class LogPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None  # None on the last page
    filters: LogFilters = field(default_factory=LogFilters)


SUMMARY_COLUMNS = (SpendLog.request_id, SpendLog.start_time, SpendLog.end_time, SpendLog.api_key, SpendLog.user_id,
                   SpendLog.team_id, SpendLog.model_group, SpendLog.model, SpendLog.provider, SpendLog.route,
                   SpendLog.prompt_tokens, SpendLog.completion_tokens, SpendLog.spend, SpendLog.status)


async def page(store: SQLStore, caller: Caller, filters: LogFilters, after: str | None = None,
               size: int = 50) -> LogPage:
    """One page of rows the caller may read, newest first, after the cursor ``after``."""
    if not 1 <= size <= MAX_PAGE:
        raise BadRequest(f"page size must be 1 to {MAX_PAGE}", param="page_size")
    conditions = [*spend_conditions(caller), *filters.conditions()]
    if after:
        moment, rid = cursors.decode(after)
        conditions.append(SpendLog.start_time <= moment)  # lets the index bound the scan
        conditions.append(or_(SpendLog.start_time < moment, and_(SpendLog.start_time == moment,
                                                                 SpendLog.request_id < rid)))
    stmt = (select(*SUMMARY_COLUMNS).where(*conditions)
            .order_by(SpendLog.start_time.desc(), SpendLog.request_id.desc()).limit(size + 1))
    async with store.sessions() as s:
        rows = [dict(r._mapping) for r in (await s.execute(stmt)).all()]
        more = len(rows) > size
        rows = rows[:size]
        await _name_keys(s, rows)
    for row in rows:
        _derive(row)
    last = rows[-1] if rows else None
    nxt = cursors.encode(last["start_time"], last["request_id"]) if more and last else None
    return LogPage(rows, nxt, filters)


async def detail(store: SQLStore, caller: Caller, request_id: str) -> dict[str, Any] | None:
    """Every column of one request's row, or None when it is not there or not the caller's to read."""
    async with store.sessions() as s:
        row = await s.get(SpendLog, request_id)
        if row is None:
            return None
        out = {attr.columns[0].name: getattr(row, attr.key) for attr in row.__mapper__.column_attrs}
        if not may_read_row(caller, out):
            return None
        await _name_keys(s, [out])
    _derive(out)
    return out


async def _name_keys(s: Any, rows: list[dict[str, Any]]) -> None:
    """Each row's key as people know it (alias, masked name), one IN query for the page."""
    hashes = {r["api_key"] for r in rows if r.get("api_key")}
    names: dict[str, tuple[str | None, str]] = {}
    if hashes:
        result = await s.execute(select(Key.token_hash, Key.key_alias, Key.key_name)
                                 .where(Key.token_hash.in_(sorted(hashes))))
        names = {h: (alias, name) for h, alias, name in result.all()}
    for r in rows:
        alias, name = names.get(r.get("api_key") or "", (None, None))
        r["key_alias"], r["key_name"] = alias, name


def _derive(row: dict[str, Any]) -> None:
    start, end = row.get("start_time"), row.get("end_time")
    row["latency_ms"] = round((end - start).total_seconds() * 1000, 1) if start and end else None
    row["total_tokens"] = (row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0)
