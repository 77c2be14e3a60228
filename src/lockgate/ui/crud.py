"""What the teams, users and organizations pages share: a paginated list, a form from the API's request
struct, and turning a posted form into that struct (only the fields that changed, for an update)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from starlette.responses import Response

from ..admin import schemas
from ..errors import LockgateError
from . import forms
from .page import UIRequest

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100

B = TypeVar("B", bound=schemas.Body)


@dataclass(frozen=True)
class Column:
    label: str
    key: str


def paging(ui: UIRequest) -> tuple[int, int]:
    """``page`` and ``page_size`` from the query, the size capped at ``MAX_PAGE_SIZE``."""
    def number(name: str, default: int) -> int:
        text = ui.query(name)
        return int(text) if text.isdigit() and 0 < int(text) < 10**9 else default

    return number("page", 1), min(number("page_size", PAGE_SIZE), MAX_PAGE_SIZE)


def fields_for(ui: UIRequest, model: type[schemas.Body], skip: tuple[str, ...], row: dict[str, Any] | None
               ) -> list[forms.Field]:
    fields = forms.fields_of(model, skip=(*skip, "spend"))  # the spend moves with every request: shown only
    groups = sorted(ui.gw.groups)
    guardrails = [spec.name for spec in ui.gw.settings.guardrails]
    for f in fields:
        if f.name == "models":
            f.kind, f.options = "select_many", groups
        elif f.name == "guardrails" and guardrails:
            f.kind, f.options = "select_many", guardrails
        elif f.name == "user_role":
            from ..admin.auth import USER_ROLES

            f.kind, f.options = "select", list(USER_ROLES)
    if row is not None:
        metadata = dict(row.get("metadata") or {})
        current = {**row, "guardrails": metadata.pop("guardrails", None),
                   "permissions": bool((metadata.pop("permissions", None) or {}).get("modify_guardrails")),
                   "metadata": metadata}
        for f in fields:
            f.value = current.get(f.name)
    return fields


def _differs(new: Any, old: Any) -> bool:
    empty: tuple[Any, ...] = (None, [], {}, "", False)
    if new in empty and old in empty:
        return False
    if isinstance(new, float) and isinstance(old, (int, float)):
        return abs(new - old) > 1e-12
    return bool(new != old)


def body_of(ui: UIRequest, model: type[B], fields: list[forms.Field], ident: dict[str, str] | None) -> B:
    """The API request for the posted form: every non-empty field (create, ``ident`` None) or the changed
    ones plus ``ident`` (update).  ``BadRequest`` / ``msgspec.ValidationError`` name the field."""
    wanted = forms.parse(fields, ui.form)
    if "permissions" in wanted:
        wanted["permissions"] = {"modify_guardrails": True} if wanted["permissions"] else None
    if ident is None:
        values = {k: v for k, v in wanted.items() if v not in (None, [], False)}
    else:
        before = {f.name: f.value for f in fields}
        if "permissions" in before:
            before["permissions"] = {"modify_guardrails": True} if before["permissions"] else None
        values = {k: v for k, v in wanted.items() if _differs(v, before.get(k))}
        together = ("metadata", "guardrails", "permissions")
        if set(together) & set(values):
            values.update({name: wanted.get(name) for name in together if name in wanted})
            values["metadata"] = values.get("metadata") or {}
        values.update(ident)
    return schemas.validate(model, values)


def form_error(ui: UIRequest, template: str, fields: list[forms.Field], exc: msgspec.ValidationError | LockgateError,
               **context: Any) -> Response:
    message = forms.validation_message(exc) if isinstance(exc, msgspec.ValidationError) else exc.message
    status = exc.status if isinstance(exc, LockgateError) else 400
    for f in fields:  # keep what was typed
        raw = ui.form.get(f.name, [])
        f.value = raw if f.kind in ("select_many", "choices") else (raw[0] if raw else None)
        if f.kind == "checkbox":
            f.value = bool(raw)
    context.update(fieldsets=forms.grouped(fields), error=message)
    return ui.render(template, status, **context)
