"""Audit log: every management change, newest first (who, what, when, from where, before and after with
secrets redacted), keyset pages and the API's filters.  For admins and admin viewers (as ``/audit/logs``)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response

from ..data import audit, params
from ..page import Page, Route, UIRequest, readers

FILTERS = ("changed_by", "action", "table_name", "object_id", "start", "end")
TABLES = ("keys", "users", "teams", "organizations", "customers", "team_members")


async def show(ui: UIRequest) -> Response:
    assert ui.gw.store is not None
    tz = params.timezone_of(ui.gw)
    filters = audit.AuditFilters(
        changed_by=ui.query("changed_by") or None, action=ui.query("action") or None,
        table_name=ui.query("table_name") or None, object_id=ui.query("object_id") or None,
        start=params.moment(ui.query("start"), "start", tz), end=params.moment(ui.query("end"), "end", tz, end=True))
    page = await audit.page(ui.gw.store, ui.caller, filters, ui.query("cursor") or None)
    kept = {name: ui.query(name) for name in FILTERS if ui.query(name)}
    next_url = ui.url("/audit") + "?" + urlencode({**kept, "cursor": page.next_cursor}) if page.next_cursor else None
    for row in page.rows:
        row["when"] = params.local(row["created_at"], tz)
    return ui.render("pages/audit.html", rows=page.rows, values=kept, next_url=next_url, tables=TABLES,
                     first_url=ui.url("/audit") + ("?" + urlencode(kept) if kept else ""),
                     paged=bool(ui.query("cursor")), timezone=str(tz))


PAGE = Page(slug="audit", title="Audit log", routes=(Route("GET", "", show),), visible=readers)
