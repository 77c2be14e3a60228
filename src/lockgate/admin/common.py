"""Shared helpers of the management routes: audit context, change notification, paging, dates."""

from __future__ import annotations

import inspect
import logging
import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..errors import BadRequest
from ..state import Audit
from .auth import Caller
from .call import Call

log = logging.getLogger("lockgate.admin")


def audit_of(call: Call, caller: Caller) -> Audit:
    return Audit(changed_by=caller.id, ip=call.client, user_agent=call.headers.get("user-agent"))


async def notify(call: Call, kind: str, ident: str) -> None:
    """Tell the enforcement side (``gateway.change_listeners``) that ``kind``/``ident`` changed."""
    for listener in list(call.gateway.change_listeners):
        try:
            result = listener(kind, ident)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("change listener failed for %s", kind)


async def reset_spend(call: Call, kind: str, ident: str, row: dict[str, Any]) -> None:
    """``spend`` was set by an update: restart the running-spend counter from it (before ``notify``)."""
    governance = call.gateway.governance
    if governance is not None:
        await governance.reset_spend(kind, ident, row)


def paging(page: int, page_size: int, total: int) -> dict[str, Any]:
    return {"total_count": total, "current_page": page, "page_size": page_size,
            "total_pages": max(1, math.ceil(total / page_size)) if page_size else 1}


def parse_when(value: str | None, field: str, end: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` (an end date includes its whole day) or an ISO 8601 time; UTC when unspecified."""
    if value in (None, ""):
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"field '{field}' must be a date (YYYY-MM-DD) or an ISO 8601 time", param=field) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}
