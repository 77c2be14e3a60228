"""The audit log for the audit page: keyset pages (newest first) with the API's filters; readers only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from ...admin.auth import Caller
from ...errors import BadRequest
from ...state.models import AuditLog
from ...state.store import SQLStore, row_dict
from . import cursor as cursors
from .scope import require_audit_reader

MAX_PAGE = 200


@dataclass
class AuditFilters:
    changed_by: str | None = None
    action: str | None = None
    table_name: str | None = None
    object_id: str | None = None
    start: datetime | None = None  # UTC, inclusive
    end: datetime | None = None  # UTC, exclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        for name in ("changed_by", "action", "table_name", "object_id"):
            value = getattr(self, name)
            if value:
                out.append(getattr(AuditLog, name) == value)
        if self.start is not None:
            out.append(AuditLog.created_at >= self.start)
        if self.end is not None:
            out.append(AuditLog.created_at < self.end)
        return out


@dataclass
class AuditPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None


async def page(store: SQLStore, caller: Caller, filters: AuditFilters, after: str | None = None,
               size: int = 50) -> AuditPage:
    require_audit_reader(caller)
    if not 1 <= size <= MAX_PAGE:
        raise BadRequest(f"page size must be 1 to {MAX_PAGE}", param="page_size")
    conditions = filters.conditions()
    if after:
        moment, ident = cursors.decode(after)
        conditions.append(AuditLog.created_at <= moment)
        conditions.append(or_(AuditLog.created_at < moment, and_(AuditLog.created_at == moment, AuditLog.id < ident)))
    stmt = (select(AuditLog).where(*conditions).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
            .limit(size + 1))
    async with store.sessions() as s:
        rows = [row_dict(r) for r in await s.scalars(stmt)]
    more = len(rows) > size
    rows = rows[:size]
    nxt = cursors.encode(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None
    return AuditPage(rows, nxt)
