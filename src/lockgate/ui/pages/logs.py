"""Logs: the spend logs, newest first, one keyset page at a time (never an OFFSET, never a count of the
table), filtered by key, team, user, model, status and time; a request's detail loaded on click into a
panel; a live tail over one server-sent-events stream (``/ui/logs/tail``).  Everyone sees the rows the
management API would show them (internal users: their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

from starlette.responses import Response, StreamingResponse

from ...errors import NotFound
from ..data import logs, params, tail
from ..page import Page, Route, UIRequest

FILTERS = ("key", "team_id", "user_id", "model", "status", "start", "end")


def _filters(ui: UIRequest) -> logs.LogFilters:
    tz = params.timezone_of(ui.gw)
    return logs.LogFilters(
        key=ui.query("key") or None, team_id=ui.query("team_id") or None, user_id=ui.query("user_id") or None,
        model=ui.query("model") or None, status=ui.query("status") or None,
        start=params.moment(ui.query("start"), "start", tz), end=params.moment(ui.query("end"), "end", tz, end=True))


async def list_logs(ui: UIRequest) -> Response:
    assert ui.gw.store is not None
    tz = params.timezone_of(ui.gw)
    page = await logs.page(ui.gw.store, ui.caller, _filters(ui), ui.query("cursor") or None)
    kept = {name: ui.query(name) for name in FILTERS if ui.query(name)}
    next_url = ui.url("/logs") + "?" + urlencode({**kept, "cursor": page.next_cursor}) if page.next_cursor else None
    first_url = ui.url("/logs") + ("?" + urlencode(kept) if kept else "")
    for row in page.rows:
        row["when"] = params.local(row["start_time"], tz)
    return ui.render("pages/logs.html", rows=page.rows, values=kept, next_url=next_url, first_url=first_url,
                     paged=bool(ui.query("cursor")), models=sorted(ui.gw.groups), timezone=str(tz))


async def detail(ui: UIRequest) -> Response:
    assert ui.gw.store is not None
    request_id = ui.param("request_id")
    row = await logs.detail(ui.gw.store, ui.caller, request_id)
    if row is None:
        raise NotFound(f"no request {request_id} you may read (a request just answered takes a moment to be written)")
    tz = params.timezone_of(ui.gw)
    row["when"], row["ended"] = params.local(row["start_time"], tz), params.local(row["end_time"], tz)
    return ui.render("pages/logs_detail.html", row=row, timezone=str(tz))


async def live_tail(ui: UIRequest) -> Response:
    hub = tail.tail_of(ui.gw)
    caller = ui.caller
    hub.check_room()  # a clear 503 at once, not a stream that ends

    async def events() -> AsyncIterator[bytes]:
        with hub.subscribe(caller) as sub:
            async for chunk in tail.sse(sub):
                yield chunk

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


async def stop_tail(ui: UIRequest) -> Response:
    """The browser's "Stop live tail": its stream ends from here (a clean end, not an aborted request)."""
    found = tail.tail_of(ui.gw).stop(ui.value("id"), ui.caller)
    return Response(status_code=204 if found else 404)


PAGE = Page(
    slug="logs",
    title="Logs",
    routes=(Route("GET", "", list_logs), Route("GET", "/tail", live_tail), Route("POST", "/tail/stop", stop_tail),
            Route("GET", "/request/{request_id}", detail)),
)
