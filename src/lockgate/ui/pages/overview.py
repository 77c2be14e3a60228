"""Overview: requests, spend, errors, latency and time to first token for today, the last 7 and the last 30
days (local days in ``general_settings.ui_timezone``), and, for admins and viewers, every deployment's live
state (healthy, cooling down and for how long, unhealthy, in flight, moving latency and TTFT)."""

from __future__ import annotations

from starlette.responses import Response

from ..data import overview, params
from ..page import Page, Route, UIRequest


async def show(ui: UIRequest) -> Response:
    assert ui.gw.store is not None
    tz = params.timezone_of(ui.gw)
    periods = await overview.periods(ui.gw.store, ui.caller, tz)
    deployments = overview.deployments(ui.gw) if ui.caller.reads_all else []
    return ui.render("pages/overview.html", periods=periods, deployments=deployments, timezone=str(tz),
                     mine=not ui.caller.reads_all)


PAGE = Page(slug="overview", title="Overview", routes=(Route("GET", "", show),))
