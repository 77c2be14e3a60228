"""Users: the paginated list, create (with a UI password), edit (role, budgets, limits, models, password),
delete: the management API's ``/user/*`` functions with the session's caller."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from ...admin import entities as api
from ...admin.schemas import UserDelete, UserInfoQuery, UserListQuery, UserNew, UserUpdate
from ...errors import LockgateError
from .. import crud, forms
from ..page import Page, Route, UIRequest, readers, segment

COLUMNS = (crud.Column("User ID", "user_id"), crud.Column("Email", "user_email"), crud.Column("Name", "user_alias"),
           crud.Column("Role", "user_role"), crud.Column("Spend (USD)", "spend"),
           crud.Column("Max budget", "max_budget"), crud.Column("Blocked", "blocked"))
SKIP_NEW = ("teams",)
SKIP_EDIT = ("user_id",)


async def list_users(ui: UIRequest) -> Response:
    page, size = crud.paging(ui)
    found = await api.user_list(ui.api_call, ui.caller,
                                UserListQuery(role=ui.query("role") or None, page=page, page_size=size))
    notice = "The user was deleted." if ui.query("deleted") else None
    return ui.render("pages/entity_list.html", rows=found["users"], total=found["total_count"], columns=COLUMNS,
                     current=found["current_page"], pages=found["total_pages"], page_size=size, noun="user",
                     link=lambda row: ui.url(f"/users/id/{segment(row['user_id'])}"), notice=notice,
                     create_url=ui.url("/users/new") if ui.caller.is_admin else None, create_label="Create user")


def _form(ui: UIRequest, fields: list[forms.Field], row: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    ident = row["user_id"] if row else None
    path = f"/users/id/{segment(ident)}" if ident else None
    return {"fieldsets": forms.grouped(fields), "can_edit": ui.caller.is_admin,
            "heading": f"User {ident}" if ident else "Create a user",
            "action": ui.url(path or "/users/new"),
            "submit_label": "Save changes" if row else "Create user",
            "delete_url": ui.url(f"{path}/delete") if path else None,
            "back_url": ui.url("/users"), "row": row, **extra}


async def new_user(ui: UIRequest) -> Response:
    fields = crud.fields_for(ui, UserNew, SKIP_NEW, None)
    return ui.render("pages/entity_form.html", **_form(ui, fields, None, error=None, notice=None))


async def create_user(ui: UIRequest) -> Response:
    fields = crud.fields_for(ui, UserNew, SKIP_NEW, None)
    try:
        body = crud.body_of(ui, UserNew, fields, None)
        created = await api.user_new(ui.api_call, ui.caller, body)
    except (msgspec.ValidationError, LockgateError) as exc:
        return crud.form_error(ui, "pages/entity_form.html", fields, exc, **_form(ui, fields, None, notice=None))
    return ui.redirect(f"/users/id/{segment(created['user_id'])}?created=1")


async def _row(ui: UIRequest) -> dict[str, Any]:
    info = await api.user_info(ui.api_call, ui.caller, UserInfoQuery(user_id=ui.param("user_id")))
    return {**info["user_info"], "_teams": info["teams"], "_keys": len(info["keys"])}


async def show_user(ui: UIRequest) -> Response:
    row = await _row(ui)
    fields = crud.fields_for(ui, UserUpdate, SKIP_EDIT, row)
    notice = "Saved." if ui.query("saved") else "User created." if ui.query("created") else None
    return ui.render("pages/user_detail.html", **_form(ui, fields, row, error=None, notice=notice))


async def update_user(ui: UIRequest) -> Response:
    row = await _row(ui)
    fields = crud.fields_for(ui, UserUpdate, SKIP_EDIT, row)
    try:
        body = crud.body_of(ui, UserUpdate, fields, {"user_id": row["user_id"]})
        await api.user_update(ui.api_call, ui.caller, body)
    except (msgspec.ValidationError, LockgateError) as exc:
        return crud.form_error(ui, "pages/user_detail.html", fields, exc, **_form(ui, fields, row, notice=None))
    return ui.redirect(f"/users/id/{segment(row['user_id'])}?saved=1")


async def delete_user(ui: UIRequest) -> Response:
    await api.user_delete(ui.api_call, ui.caller, UserDelete(user_ids=[ui.param("user_id")]))
    return ui.redirect("/users?deleted=1")


PAGE = Page(
    slug="users",
    title="Users",
    routes=(
        Route("GET", "", list_users),
        Route("GET", "/new", new_user),
        Route("POST", "/new", create_user),
        Route("GET", "/id/{user_id:str}", show_user),
        Route("POST", "/id/{user_id:str}", update_user),
        Route("POST", "/id/{user_id:str}/delete", delete_user),
    ),
    visible=readers,
)
