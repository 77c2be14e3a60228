"""Playground: chat with a chosen model through the gateway's own ``/v1/chat/completions``, streamed, with
a key the user types.  The browser sends the key itself (an ``Authorization`` header on a same-origin
``fetch``, ``static/data-pages.js``): it never reaches a URL, a log or the session, and the request is
an ordinary model request (that key's limits, budgets and spend apply; it shows in the logs)."""

from __future__ import annotations

from starlette.responses import Response

from .. import root_path
from ..page import Page, Route, UIRequest


async def show(ui: UIRequest) -> Response:
    return ui.render("pages/playground.html", models=sorted(ui.gw.groups),
                     endpoint=root_path() + "/v1/chat/completions")


PAGE = Page(slug="playground", title="Playground", routes=(Route("GET", "", show),))
