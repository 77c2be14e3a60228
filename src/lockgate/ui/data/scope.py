"""Which spend rows a caller may read: the management API's rule (``/spend/logs``), in one place.

Admins and admin viewers read every row; anyone else reads the rows of their own user (the keys they own),
or, for a key without a user, that key's own rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.sql.elements import ColumnElement

from ...admin.auth import Caller
from ...errors import PermissionDenied
from ...state.models import SpendLog


def spend_conditions(caller: Caller) -> list[ColumnElement[bool]]:
    """SQL conditions limiting ``spend_logs`` to what ``caller`` may read (none for readers of everything)."""
    if caller.reads_all:
        return []
    if caller.user_id is not None:
        return [SpendLog.user_id == caller.user_id]
    if caller.token_hash is not None:
        return [SpendLog.api_key == caller.token_hash]
    raise PermissionDenied(f"{caller.describe()} may not read spend", code="forbidden")


def may_read_row(caller: Caller, row: dict[str, Any]) -> bool:
    """The same rule for one row already read (the live tail, a detail fetch)."""
    if caller.reads_all:
        return True
    if caller.user_id is not None:
        return row.get("user_id") == caller.user_id
    return caller.token_hash is not None and row.get("api_key") == caller.token_hash


def require_audit_reader(caller: Caller) -> None:
    """The audit log is for admins and admin viewers (as ``/audit/logs``)."""
    caller.require_reader("read audit logs")
