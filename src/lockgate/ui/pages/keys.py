"""Virtual keys: the paginated list (search, filters), create (every ``/key/generate`` field; the new key
is shown once), edit, regenerate, block / unblock, delete.  Every action calls the management API's own
route function with the session's caller."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from ...admin import keys as api
from ...admin.auth import INTERNAL_USER, Caller
from ...admin.schemas import KeyDelete, KeyFields, KeyGenerate, KeyInfoQuery, KeyRef, KeyRegenerate, KeyUpdate, validate
from ...errors import LockgateError, NotFound
from .. import forms
from ..keylist import MAX_PAGE_SIZE, PAGE_SIZES, KeyQuery, page_of_keys
from ..page import Page, Route, UIRequest

ADMIN_ONLY = ("organization_id",)
# the key itself is the page; blocking has its own buttons; the spend moves with every request (a form
# sending back the value it showed would undo the spend since): shown, set through the API only
NEVER = ("key", "blocked", "spend")


def may_create(caller: Caller) -> bool:
    """Who ``/key/generate`` lets in (admin, internal user, or a team admin for their team)."""
    return caller.is_admin or caller.role == INTERNAL_USER or bool(caller.admin_teams)


def key_fields(ui: UIRequest, model: type[KeyFields], row: dict[str, Any] | None) -> list[forms.Field]:
    skip = NEVER if ui.caller.is_admin else (*NEVER, *ADMIN_ONLY)
    if row is not None:
        skip = (*skip, "duration")  # an existing key: its expiry is a date
    fields = forms.fields_of(model, skip=skip, extra=() if "tags" in model.__struct_fields__ else ("tags",))
    groups = sorted(ui.gw.groups)
    guardrails = [spec.name for spec in ui.gw.settings.guardrails]
    teams = sorted(ui.caller.team_roles) if not ui.caller.reads_all else []
    for f in fields:
        if f.name == "models":
            f.kind, f.options = "select_many", groups
        elif f.name == "guardrails":
            f.kind, f.options = ("select_many", guardrails) if guardrails else ("list", [])
        elif f.name == "team_id" and not ui.caller.reads_all:
            f.kind, f.options = "select", teams
        elif f.name == "user_id" and not ui.caller.is_admin:
            f.help = "yours unless you are the team's admin"
    if row is not None:
        metadata = dict(row.get("metadata") or {})
        current = {**row, "guardrails": metadata.pop("guardrails", None),
                   "permissions": bool((metadata.pop("permissions", None) or {}).get("modify_guardrails")),
                   "tags": metadata.pop("tags", None), "metadata": metadata}
        for f in fields:
            f.value = current.get(f.name)
    elif not ui.caller.is_admin:
        for f in fields:
            if f.name == "user_id":
                f.value = ui.caller.user_id
    return fields


def to_api(values: dict[str, Any]) -> dict[str, Any]:
    """Form values -> the API's fields (tags into metadata, the guardrails switch into permissions)."""
    out = dict(values)
    tags = out.pop("tags", None)
    if "permissions" in out:
        out["permissions"] = {"modify_guardrails": True} if out["permissions"] else None
    if tags:
        out["metadata"] = {**(out.get("metadata") or {}), "tags": tags}
    return out


async def list_keys(ui: UIRequest) -> Response:
    query = KeyQuery.of(ui.request.query_params)
    rows, total = await page_of_keys(ui.gw, ui.caller, query)
    context: dict[str, Any] = {"rows": rows, "total": total, "query": query, "page_sizes": PAGE_SIZES,
                               "max_page": MAX_PAGE_SIZE,
               "pages": max(1, -(-total // query.page_size)), "may_create": may_create(ui.caller)}
    if ui.htmx and ui.request.headers.get("hx-target") == "key-results":
        return ui.render("pages/keys_results.html", **context)
    return ui.render("pages/keys.html", **context)


async def new_key(ui: UIRequest) -> Response:
    return ui.render("pages/key_form.html", fieldsets=forms.grouped(key_fields(ui, KeyGenerate, None)), row=None,
                     error=None)


async def create_key(ui: UIRequest) -> Response:
    fields = key_fields(ui, KeyGenerate, None)
    try:
        values = {k: v for k, v in to_api(forms.parse(fields, ui.form)).items() if v not in (None, [], False)}
        body = validate(KeyGenerate, values)
    except (msgspec.ValidationError, LockgateError) as exc:
        return _form_error(ui, fields, None, exc)
    created = await api.generate(ui.api_call, ui.caller, body)
    return ui.render("pages/key_created.html", key=created["key"], row=created, action="created")


def _form_error(ui: UIRequest, fields: list[forms.Field], row: dict[str, Any] | None,
                exc: msgspec.ValidationError | LockgateError) -> Response:
    message = forms.validation_message(exc) if isinstance(exc, msgspec.ValidationError) else exc.message
    for f in fields:  # keep what was typed
        raw = ui.form.get(f.name, [])
        f.value = raw if f.kind in ("select_many", "choices") else (raw[0] if raw else None)
        if f.kind == "checkbox":
            f.value = bool(raw)
    return ui.render("pages/key_form.html", 400, fieldsets=forms.grouped(fields), row=row, error=message)


async def _row(ui: UIRequest) -> dict[str, Any]:
    token = ui.param("token")
    info = await api.key_info(ui.api_call, ui.caller, KeyInfoQuery(key=token))  # the API's read check
    if info["key"] != token:
        raise NotFound("key not found", code="key_not_found")
    row: dict[str, Any] = info["info"]
    return row


async def show_key(ui: UIRequest) -> Response:
    row = await _row(ui)
    fields = key_fields(ui, KeyUpdate, row)
    return ui.render("pages/key_form.html", fieldsets=forms.grouped(fields), row=row, error=None,
                     can_manage=ui.caller.can_manage_key(row), can_block=_can_block(ui.caller, row))


def _can_block(caller: Caller, row: dict[str, Any]) -> bool:
    return caller.is_admin or caller.team_admin_of(row.get("team_id"))


async def update_key(ui: UIRequest) -> Response:
    row = await _row(ui)
    fields = key_fields(ui, KeyUpdate, row)
    before = {f.name: f.value for f in fields}
    try:
        wanted = forms.parse(fields, ui.form)
        changed = {k: v for k, v in wanted.items() if _differs(v, before.get(k))}
        together = ("metadata", "tags", "guardrails", "permissions")  # all kept in the key's metadata
        if set(together) & set(changed):
            changed.update({name: wanted.get(name) for name in together if name in wanted})
            changed["metadata"] = changed.get("metadata") or {}
        body = validate(KeyUpdate, {**to_api(changed), "key": row["token"]})
    except (msgspec.ValidationError, LockgateError) as exc:
        return _form_error(ui, fields, row, exc)
    if len(body.given("key")):
        await api.update_key(ui.api_call, ui.caller, body)
    return ui.redirect(f"/keys/{row['token']}?saved=1")


def _differs(new: Any, old: Any) -> bool:
    empty: tuple[Any, ...] = (None, [], {}, "", False)
    if new in empty and old in empty:
        return False
    if isinstance(new, float) and isinstance(old, (int, float)):
        return abs(new - old) > 1e-12
    return bool(new != old)


async def regenerate_key(ui: UIRequest) -> Response:
    row = await _row(ui)
    created = await api.regenerate(ui.api_call, ui.caller, KeyRegenerate(key=row["token"]))
    return ui.render("pages/key_created.html", key=created["key"], row=created, action="regenerated")


async def block_key(ui: UIRequest) -> Response:
    row = await _row(ui)
    await api.block(ui.api_call, ui.caller, KeyRef(key=row["token"]))
    return ui.redirect(f"/keys/{row['token']}")


async def unblock_key(ui: UIRequest) -> Response:
    row = await _row(ui)
    await api.unblock(ui.api_call, ui.caller, KeyRef(key=row["token"]))
    return ui.redirect(f"/keys/{row['token']}")


async def delete_key(ui: UIRequest) -> Response:
    row = await _row(ui)
    await api.delete_keys(ui.api_call, ui.caller, KeyDelete(keys=[row["token"]]))
    return ui.redirect("/keys?deleted=1")


PAGE = Page(
    slug="keys",
    title="Virtual keys",
    routes=(
        Route("GET", "", list_keys),
        Route("GET", "/new", new_key),
        Route("POST", "/new", create_key),
        Route("GET", "/{token:str}", show_key),
        Route("POST", "/{token:str}", update_key),
        Route("POST", "/{token:str}/regenerate", regenerate_key),
        Route("POST", "/{token:str}/block", block_key),
        Route("POST", "/{token:str}/unblock", unblock_key),
        Route("POST", "/{token:str}/delete", delete_key),
    ),
)
