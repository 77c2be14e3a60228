"""``/spend/logs``, ``/global/spend/report`` and ``/audit/logs``."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from .auth import Caller, authenticate, token_hash_of
from .common import paging, parse_when, public

router = APIRouter()


@router.get("/spend/logs", tags=["spend"])
async def spend_logs(
    request: Request,
    api_key: str | None = None,
    user_id: str | None = None,
    team_id: str | None = None,
    model: str | None = None,
    request_id: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    page: int = Query(1, ge=1),
    page_size: int = Query(50, ge=1, le=1000),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """Spend records, newest first.  Non-admin callers see only their own user's records."""
    if not caller.reads_all:
        caller.require(caller.user_id is not None and user_id in (None, caller.user_id),
                       "read other users' spend")
        user_id = caller.user_id
    filters = {"api_key": token_hash_of(api_key) if api_key else None, "user_id": user_id, "team_id": team_id,
               "model_group": model, "request_id": request_id}
    rows, total = await request.app.state.gateway.store.spend_logs(
        filters, parse_when(start_date, "start_date"), parse_when(end_date, "end_date", end=True), page, page_size)
    return {"data": [public(r) for r in rows], **paging(page, page_size, total)}


@router.get("/global/spend/report", tags=["spend"])
async def spend_report(
    request: Request,
    start_date: str | None = None,
    end_date: str | None = None,
    group_by: Literal["day", "team", "key", "user", "model"] = "day",
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """Spend per day, or per day and team / key / user / model."""
    caller.require_reader("read the global spend report")
    rows = await request.app.state.gateway.store.spend_report(
        group_by, parse_when(start_date, "start_date"), parse_when(end_date, "end_date", end=True))
    return {"group_by": group_by, "start_date": start_date, "end_date": end_date,
            "total_spend": sum(r["spend"] for r in rows), "data": rows}


@router.get("/audit/logs", tags=["audit"])
async def audit_logs(
    request: Request,
    changed_by: str | None = None,
    action: str | None = None,
    table_name: str | None = None,
    object_id: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    page: int = Query(1, ge=1),
    page_size: int = Query(50, ge=1, le=1000),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """Every management change, newest first: who, what, before and after (secrets redacted), IP, user agent."""
    caller.require_reader("read audit logs")
    filters = {"changed_by": changed_by, "action": action, "table_name": table_name, "object_id": object_id}
    rows, total = await request.app.state.gateway.store.audit_logs(
        filters, parse_when(start_date, "start_date"), parse_when(end_date, "end_date", end=True), page, page_size)
    return {"data": rows, **paging(page, page_size, total)}
