"""Usage: spend, tokens and requests per day in the declared timezone (``general_settings.ui_timezone``),
in total and by key, team, user, model or tag (the top groups and the rest), as charts with a table view;
a CSV export streamed from the database.  Day totals equal the sums of ``/spend/logs`` for each day."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response, StreamingResponse

from ..data import params, usage
from ..page import Page, Route, UIRequest

GROUPS = (("", "nothing (day totals)"), ("model", "model"), ("key", "key"), ("team", "team"), ("user", "user"),
          ("tag", "tag"))


def _query(ui: UIRequest) -> usage.UsageQuery:
    tz = params.timezone_of(ui.gw)
    first, last = params.day_range(ui.query("start"), ui.query("end"), tz)
    return usage.UsageQuery(first, last, tz, ui.query("group_by") or None)


async def show(ui: UIRequest) -> Response:
    assert ui.gw.store is not None
    q = _query(ui)
    result = await usage.usage(ui.gw.store, ui.caller, q)
    values = {"start": q.first.isoformat(), "end": q.last.isoformat(), "group_by": q.group_by or ""}
    export = ui.url("/usage/export.csv") + "?" + urlencode({k: v for k, v in values.items() if v})
    return ui.render("pages/usage.html", result=result, values=values, groups=GROUPS, export_url=export,
                     timezone=str(q.tz), days=q.days)


async def export(ui: UIRequest) -> Response:
    assert ui.gw.store is not None
    q = _query(ui)
    name = f"lockgate-usage-{q.first.isoformat()}-{q.last.isoformat()}{'-by-' + q.group_by if q.group_by else ''}.csv"
    return StreamingResponse(usage.csv_lines(ui.gw.store, ui.caller, q), media_type="text/csv; charset=utf-8",
                             headers={"content-disposition": f'attachment; filename="{name}"',
                                      "cache-control": "no-store"})


PAGE = Page(
    slug="usage",
    title="Usage",
    routes=(Route("GET", "", show), Route("GET", "/export.csv", export)),
)
