"""What a page module declares (``Page``, ``Route``) and what its handlers receive (``UIRequest``).

A page module under ``ui/pages/`` defines ``PAGE = Page(slug, title, routes, ...)``; its routes answer
at ``{root}/ui/{slug}{route.path}``.  A handler gets a ``UIRequest``: the signed-in session, the
management API's ``Caller`` for it, the form of a POST (CSRF already checked) and ``render``.
Handlers call the management API's own functions with that caller, so the UI can do exactly what the
caller's role could do through the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..admin.auth import Caller
from ..admin.call import Call
from .sessions import Session

if TYPE_CHECKING:
    from ..gateway import Gateway
    from .site import Site

Handler = Callable[["UIRequest"], Awaitable[Response]]


def segment(value: str) -> str:
    """An id as one URL path segment: every reserved character escaped (``/`` is ``%2F``, ``%`` is ``%25``,
    a space ``%20``).  The UI's app keeps ``%2F`` and ``%25`` escaped in the path it routes on (see
    ``app.routed_path``), so ``UIRequest.param`` gives the id back whole."""
    return quote(value, safe="")


def everyone(caller: Caller) -> bool:
    return True


def readers(caller: Caller) -> bool:
    """proxy_admin and proxy_admin_viewer (the management API's ``reads_all``)."""
    return caller.reads_all


@dataclass(frozen=True)
class Route:
    method: str  # GET or POST
    path: str  # after {root}/ui/{slug}: "" for the page itself, "/new", "/{key_id}", "/id/{team_id}", ...
    handler: Handler


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    routes: tuple[Route, ...]
    visible: Callable[[Caller], bool] = everyone  # in the navigation (the API still decides what it may do)
    in_nav: bool = True


@dataclass
class UIRequest:
    request: Request
    gw: Gateway
    site: Site
    session: Session
    caller: Caller
    page: Page
    form: dict[str, list[str]] = field(default_factory=dict)

    @property
    def api_call(self) -> Call:
        """This request as a management API call (the pages run the API's own handlers)."""
        return Call.of(self.gw, self.request.scope)

    @property
    def htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"

    def value(self, name: str) -> str:
        """A form field's first value, stripped ("" when absent)."""
        values = self.form.get(name)
        return values[0].strip() if values else ""

    def values(self, name: str) -> list[str]:
        return [v.strip() for v in self.form.get(name, []) if v.strip()]

    def param(self, name: str) -> str:
        """A path parameter (an id in the URL, written with ``segment``), decoded."""
        return unquote(self.request.path_params[name])

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default).strip()

    def url(self, path: str = "") -> str:
        return self.site.url(path)

    def redirect(self, path: str) -> Response:
        target = self.site.url(path)
        if self.htmx:
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self.site.render(template, status, caller=self.caller, session=self.session, page=self.page,
                                request=self.request, **context)
