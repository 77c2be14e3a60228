"""Teams: the list (a member sees their own teams), create, edit (budgets, limits, models), members and
their roles (add, change, remove), delete: the management API's ``/team/*`` functions."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from ...admin import entities as api
from ...admin.auth import TEAM_ROLES
from ...admin.schemas import (
    Member,
    MemberAdd,
    MemberDelete,
    TeamDelete,
    TeamInfoQuery,
    TeamListQuery,
    TeamNew,
    TeamUpdate,
    validate,
)
from ...errors import LockgateError
from .. import crud, forms
from ..page import Page, Route, UIRequest, segment

COLUMNS = (crud.Column("Team ID", "team_id"), crud.Column("Name", "team_alias"),
           crud.Column("Organization", "organization_id"), crud.Column("Spend (USD)", "spend"),
           crud.Column("Max budget", "max_budget"), crud.Column("Models", "models"),
           crud.Column("Blocked", "blocked"))
SKIP_NEW = ("members_with_roles",)
SKIP_EDIT = ("team_id",)


async def list_teams(ui: UIRequest) -> Response:
    page, size = crud.paging(ui)
    found = await api.team_list(ui.api_call, ui.caller, TeamListQuery(page=page, page_size=size))
    notice = "The team was deleted." if ui.query("deleted") else None
    return ui.render("pages/entity_list.html", rows=found["teams"], total=found["total_count"], columns=COLUMNS,
                     current=found["current_page"], pages=found["total_pages"], page_size=size, noun="team",
                     link=lambda row: ui.url(f"/teams/id/{segment(row['team_id'])}"), notice=notice,
                     create_url=ui.url("/teams/new") if ui.caller.is_admin else None, create_label="Create team")


def _form(ui: UIRequest, fields: list[forms.Field], row: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    ident = row["team_id"] if row else None
    path = f"/teams/id/{segment(ident)}" if ident else None
    return {"fieldsets": forms.grouped(fields), "can_edit": ui.caller.is_admin,
            "heading": f"Team {row.get('team_alias') or ident}" if row else "Create a team",
            "action": ui.url(path or "/teams/new"),
            "submit_label": "Save changes" if row else "Create team",
            "delete_url": ui.url(f"{path}/delete") if path else None,
            "back_url": ui.url("/teams"), "row": row, "team_roles": TEAM_ROLES,
            "manages_members": row is not None and (ui.caller.is_admin or ui.caller.team_admin_of(ident)), **extra}


async def new_team(ui: UIRequest) -> Response:
    fields = crud.fields_for(ui, TeamNew, SKIP_NEW, None)
    return ui.render("pages/entity_form.html", **_form(ui, fields, None, error=None, notice=None))


async def create_team(ui: UIRequest) -> Response:
    fields = crud.fields_for(ui, TeamNew, SKIP_NEW, None)
    try:
        body = crud.body_of(ui, TeamNew, fields, None)
        created = await api.team_new(ui.api_call, ui.caller, body)
    except (msgspec.ValidationError, LockgateError) as exc:
        return crud.form_error(ui, "pages/entity_form.html", fields, exc, **_form(ui, fields, None, notice=None))
    return ui.redirect(f"/teams/id/{segment(created['team_id'])}?created=1")


async def _row(ui: UIRequest) -> dict[str, Any]:
    info = await api.team_info(ui.api_call, ui.caller, TeamInfoQuery(team_id=ui.param("team_id")))
    row: dict[str, Any] = {**info["team_info"], "_keys": len(info["keys"])}
    return row


async def show_team(ui: UIRequest, error: str | None = None, status: int = 200) -> Response:
    row = await _row(ui)
    fields = crud.fields_for(ui, TeamUpdate, SKIP_EDIT, row)
    notice = "Saved." if ui.query("saved") else "Team created." if ui.query("created") else None
    return ui.render("pages/team_detail.html", status, **_form(ui, fields, row, error=error, notice=notice))


async def update_team(ui: UIRequest) -> Response:
    row = await _row(ui)
    fields = crud.fields_for(ui, TeamUpdate, SKIP_EDIT, row)
    try:
        body = crud.body_of(ui, TeamUpdate, fields, {"team_id": row["team_id"]})
        await api.team_update(ui.api_call, ui.caller, body)
    except (msgspec.ValidationError, LockgateError) as exc:
        return crud.form_error(ui, "pages/team_detail.html", fields, exc, **_form(ui, fields, row, notice=None))
    return ui.redirect(f"/teams/id/{segment(row['team_id'])}?saved=1")


async def add_member(ui: UIRequest) -> Response:
    team_id = ui.param("team_id")
    try:
        member = validate(Member, {"user_id": ui.value("user_id"), "role": ui.value("role") or "member"})
        await api.member_add(ui.api_call, ui.caller, validate(MemberAdd, {"team_id": team_id, "member": member}))
    except msgspec.ValidationError as exc:
        return await show_team(ui, forms.validation_message(exc), 400)
    except LockgateError as exc:
        return await show_team(ui, exc.message, exc.status)
    return ui.redirect(f"/teams/id/{segment(team_id)}?saved=1")


async def remove_member(ui: UIRequest) -> Response:
    team_id = ui.param("team_id")
    await api.member_delete(ui.api_call, ui.caller, MemberDelete(team_id=team_id, user_id=ui.value("user_id")))
    return ui.redirect(f"/teams/id/{segment(team_id)}?saved=1")


async def delete_team(ui: UIRequest) -> Response:
    await api.team_delete(ui.api_call, ui.caller, TeamDelete(team_ids=[ui.param("team_id")]))
    return ui.redirect("/teams?deleted=1")


PAGE = Page(
    slug="teams",
    title="Teams",
    routes=(
        Route("GET", "", list_teams),
        Route("GET", "/new", new_team),
        Route("POST", "/new", create_team),
        Route("GET", "/id/{team_id:str}", show_team),
        Route("POST", "/id/{team_id:str}", update_team),
        Route("POST", "/id/{team_id:str}/members", add_member),
        Route("POST", "/id/{team_id:str}/members/remove", remove_member),
        Route("POST", "/id/{team_id:str}/delete", delete_team),
    ),
)
