"""``/spend/logs``, ``/global/spend/report`` and ``/audit/logs``."""

from __future__ import annotations

from typing import Any

from .auth import Caller, token_hash_of
from .call import Call, Route
from .common import paging, parse_when, public
from .schemas import AuditLogsQuery, SpendLogsQuery, SpendReportQuery


async def spend_logs(call: Call, caller: Caller, query: SpendLogsQuery) -> dict[str, Any]:
    """Spend records, newest first.  Non-admin callers see only their own user's records."""
    user_id, api_key, page, page_size = query.user_id, query.api_key, query.page, query.page_size
    if not caller.reads_all:
        caller.require(caller.user_id is not None and user_id in (None, caller.user_id),
                       "read other users' spend")
        user_id = caller.user_id
    filters = {"api_key": token_hash_of(api_key) if api_key else None, "user_id": user_id,
               "team_id": query.team_id, "model_group": query.model, "request_id": query.request_id}
    rows, total = await call.store.spend_logs(
        filters, parse_when(query.start_date, "start_date"), parse_when(query.end_date, "end_date", end=True), page,
        page_size)
    return {"data": [public(r) for r in rows], **paging(page, page_size, total)}


async def spend_report(call: Call, caller: Caller, query: SpendReportQuery) -> dict[str, Any]:
    """Spend per day, or per day and team / key / user / model."""
    start_date, end_date, group_by = query.start_date, query.end_date, query.group_by
    caller.require_reader("read the global spend report")
    rows = await call.store.spend_report(
        group_by, parse_when(start_date, "start_date"), parse_when(end_date, "end_date", end=True))
    return {"group_by": group_by, "start_date": start_date, "end_date": end_date,
            "total_spend": sum(r["spend"] for r in rows), "data": rows}


async def audit_logs(call: Call, caller: Caller, query: AuditLogsQuery) -> dict[str, Any]:
    """Every management change, newest first: who, what, before and after (secrets redacted), IP, user agent."""
    caller.require_reader("read audit logs")
    filters = {"changed_by": query.changed_by, "action": query.action, "table_name": query.table_name,
               "object_id": query.object_id}
    rows, total = await call.store.audit_logs(
        filters, parse_when(query.start_date, "start_date"), parse_when(query.end_date, "end_date", end=True),
        query.page, query.page_size)
    return {"data": rows, **paging(query.page, query.page_size, total)}


ROUTES = (
    Route("GET", "/spend/logs", spend_logs, "spend", query=SpendLogsQuery),
    Route("GET", "/global/spend/report", spend_report, "spend", query=SpendReportQuery),
    Route("GET", "/audit/logs", audit_logs, "audit", query=AuditLogsQuery),
)
