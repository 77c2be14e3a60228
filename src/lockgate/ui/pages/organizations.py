"""Organizations: list, create, edit (budgets, limits, models), delete: ``/organization/*``."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from ...admin import entities as api
from ...admin.schemas import OrgDelete, OrgInfoQuery, OrgNew, OrgUpdate, Paged
from ...errors import LockgateError
from .. import crud, forms
from ..page import Page, Route, UIRequest, readers, segment

COLUMNS = (crud.Column("Organization ID", "organization_id"), crud.Column("Name", "organization_alias"),
           crud.Column("Spend (USD)", "spend"), crud.Column("Max budget", "max_budget"),
           crud.Column("Models", "models"), crud.Column("Blocked", "blocked"))
SKIP_EDIT = ("organization_id",)


async def list_orgs(ui: UIRequest) -> Response:
    page, size = crud.paging(ui)
    found = await api.org_list(ui.api_call, ui.caller, Paged(page=page, page_size=size))
    notice = "The organization was deleted." if ui.query("deleted") else None
    return ui.render("pages/entity_list.html", rows=found["organizations"], total=found["total_count"],
                     columns=COLUMNS, current=found["current_page"], pages=found["total_pages"], page_size=size,
                     noun="organization",
                     link=lambda row: ui.url(f"/organizations/id/{segment(row['organization_id'])}"),
                     notice=notice, create_url=ui.url("/organizations/new") if ui.caller.is_admin else None,
                     create_label="Create organization")


def _form(ui: UIRequest, fields: list[forms.Field], row: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    ident = row["organization_id"] if row else None
    path = f"/organizations/id/{segment(ident)}" if ident else None
    return {"fieldsets": forms.grouped(fields), "can_edit": ui.caller.is_admin,
            "heading": f"Organization {row.get('organization_alias') or ident}" if row else "Create an organization",
            "action": ui.url(path or "/organizations/new"),
            "submit_label": "Save changes" if row else "Create organization",
            "delete_url": ui.url(f"{path}/delete") if path else None,
            "back_url": ui.url("/organizations"), "row": row, **extra}


async def new_org(ui: UIRequest) -> Response:
    fields = crud.fields_for(ui, OrgNew, (), None)
    return ui.render("pages/entity_form.html", **_form(ui, fields, None, error=None, notice=None))


async def create_org(ui: UIRequest) -> Response:
    fields = crud.fields_for(ui, OrgNew, (), None)
    try:
        body = crud.body_of(ui, OrgNew, fields, None)
        created = await api.org_new(ui.api_call, ui.caller, body)
    except (msgspec.ValidationError, LockgateError) as exc:
        return crud.form_error(ui, "pages/entity_form.html", fields, exc, **_form(ui, fields, None, notice=None))
    return ui.redirect(f"/organizations/id/{segment(created['organization_id'])}?created=1")


async def _row(ui: UIRequest) -> dict[str, Any]:
    info = await api.org_info(ui.api_call, ui.caller, OrgInfoQuery(organization_id=ui.param("org_id")))
    return info


async def show_org(ui: UIRequest) -> Response:
    row = await _row(ui)
    fields = crud.fields_for(ui, OrgUpdate, SKIP_EDIT, row)
    notice = "Saved." if ui.query("saved") else "Organization created." if ui.query("created") else None
    return ui.render("pages/entity_form.html", **_form(ui, fields, row, error=None, notice=notice))


async def update_org(ui: UIRequest) -> Response:
    row = await _row(ui)
    fields = crud.fields_for(ui, OrgUpdate, SKIP_EDIT, row)
    try:
        body = crud.body_of(ui, OrgUpdate, fields, {"organization_id": row["organization_id"]})
        await api.org_update(ui.api_call, ui.caller, body)
    except (msgspec.ValidationError, LockgateError) as exc:
        return crud.form_error(ui, "pages/entity_form.html", fields, exc, **_form(ui, fields, row, notice=None))
    return ui.redirect(f"/organizations/id/{segment(row['organization_id'])}?saved=1")


async def delete_org(ui: UIRequest) -> Response:
    org_id = ui.param("org_id")
    await api.org_delete(ui.api_call, ui.caller, OrgDelete(organization_ids=[org_id]))
    return ui.redirect("/organizations?deleted=1")


PAGE = Page(
    slug="organizations",
    title="Organizations",
    routes=(
        Route("GET", "", list_orgs),
        Route("GET", "/new", new_org),
        Route("POST", "/new", create_org),
        Route("GET", "/id/{org_id:str}", show_org),
        Route("POST", "/id/{org_id:str}", update_org),
        Route("POST", "/id/{org_id:str}/delete", delete_org),
    ),
    visible=readers,
)
