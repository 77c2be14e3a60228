"""The UI's ASGI app: sign-in and sign-out, static files, and every page's routes behind the session
and CSRF checks (see ``sessions.py``), with the security headers on every answer."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route as StarletteRoute

from ..admin.auth import PROXY_ADMIN
from ..errors import LockgateError
from ..http import Receive, Scope, Send
from . import credentials, root_path, sessions
from .forms import validation_message
from .page import Page, Route, UIRequest
from .pages import load_pages
from .site import Site

if TYPE_CHECKING:
    from ..gateway import Gateway

log = logging.getLogger("lockgate.ui")

MAX_FORM = 256 * 1024  # a form (the biggest: a key with its metadata JSON)


_KEPT_ESCAPED = re.compile(r"(%2[fF]|%25)")


def routed_path(scope: Scope) -> str:
    """The path the UI routes on: the request's path as sent (``raw_path``) decoded, except ``%2F`` and
    ``%25``, which stay escaped so that an id holding ``/`` (written by ``page.segment``) stays one path
    parameter; ``UIRequest.param`` decodes it.  (The ASGI server's ``path`` has them decoded already.)"""
    raw = scope.get("raw_path")
    if not raw:
        return str(scope["path"])
    pieces = _KEPT_ESCAPED.split(raw.decode("latin-1"))
    return "".join(piece.upper() if i % 2 else unquote(piece) for i, piece in enumerate(pieces))


class FormTooLarge(LockgateError):
    status = 413
    type = "invalid_request_error"


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded body, at most ``MAX_FORM`` bytes (413 beyond)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_FORM:
        raise FormTooLarge("the form is too large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM:
            raise FormTooLarge("the form is too large")
        chunks.append(chunk)
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind not in ("application/x-www-form-urlencoded", ""):
        return {}
    return parse_qs(b"".join(chunks).decode("utf-8", "replace"), keep_blank_values=True)


class UI:
    def __init__(self, gw: Gateway, pages: list[Page]) -> None:
        self.gw = gw
        self.root = root_path()
        self.site = Site(self.root, pages, sso=_sso_configured(gw))
        self.limiter = sessions.LoginLimiter(gw)
        routes = [
            StarletteRoute("/ui", self.home, methods=["GET"]),
            StarletteRoute("/ui/", self.home, methods=["GET"]),
            StarletteRoute("/ui/login", self.login_page, methods=["GET"]),
            StarletteRoute("/ui/login", self.login, methods=["POST"]),
            StarletteRoute("/ui/logout", self.guarded(self.logout), methods=["POST"]),
            StarletteRoute("/ui/static/{name:path}", self.static, methods=["GET", "HEAD"]),
        ]
        for page in pages:
            for route in page.routes:
                routes.append(StarletteRoute(f"/ui/{page.slug}{route.path}", self.guarded(route.handler, page),
                                             methods=[route.method]))
        self.app = Starlette(routes=routes)
        self.app.state.gateway = gw  # the management API's functions read it from request.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, raw = routed_path(scope), scope.get("raw_path") or scope["path"].encode()
        if self.root and path.startswith(self.root + "/ui"):
            path, raw = path[len(self.root):], raw[len(self.root.encode()):]
        scope = {**scope, "path": path, "raw_path": raw}

        async def secured(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *[(k.encode(), v.encode()) for k, v in sessions.SECURITY_HEADERS]]
            await send(dict(message))

        await self.app(scope, receive, secured)

    # ------------------------------------------------------------------ guard

    def guarded(self, handler: Any, page: Page | None = None) -> Any:
        async def endpoint(request: Request) -> Response:
            token = request.cookies.get(sessions.COOKIE)
            session = await sessions.find(self.gw, token)
            caller = await sessions.caller_of(self.gw, session) if session is not None else None
            if session is None or caller is None:
                return self._to_login(request)
            form: dict[str, list[str]] = {}
            if request.method != "GET":
                try:
                    form = await read_form(request)
                except LockgateError as err:
                    return self.site.render("error.html", err.status, message=err.message, caller=caller)
                presented = request.headers.get(sessions.CSRF_HEADER) or (form.get(sessions.CSRF_FIELD) or [""])[0]
                if not sessions.csrf_ok(session.csrf, presented):
                    return self.site.render("error.html", 403, caller=caller, session=session,
                                            message="CSRF token missing or wrong: reload the page and try again.")
            ui = UIRequest(request, self.gw, self.site, session, caller, page or _NO_PAGE, form)
            try:
                result: Response = await handler(ui)
                return result
            except LockgateError as err:
                return ui.render("error.html", err.status, message=err.message)
            except msgspec.ValidationError as exc:
                return ui.render("error.html", 400, message=validation_message(exc))
            except Exception as exc:
                log.error("UI error on %s", request.url.path, exc_info=exc)
                return ui.render("error.html", 500, message="internal error in the UI (see the gateway's log)")

        return endpoint

    def _to_login(self, request: Request) -> Response:
        target = self.site.url("/login")
        if request.headers.get("hx-request") == "true":
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    # ------------------------------------------------------------------ routes

    async def home(self, request: Request) -> Response:
        session = await sessions.find(self.gw, request.cookies.get(sessions.COOKIE))
        caller = await sessions.caller_of(self.gw, session) if session is not None else None
        if caller is None:
            return self._to_login(request)
        nav = self.site.nav(caller)
        return RedirectResponse(self.site.url(f"/{nav[0].slug}" if nav else "/account"), status_code=303)

    async def static(self, request: Request) -> Response:
        item = self.site.static.get(request.path_params["name"])
        if item is None:
            return Response("not found", status_code=404, media_type="text/plain")
        versioned = request.query_params.get("v") == item.version
        cache = "public, max-age=31536000, immutable" if versioned else "no-cache"
        etag = f'"{item.version}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag, "cache-control": cache})
        return Response(item.body, media_type=item.content_type, headers={"etag": etag, "cache-control": cache})

    async def login_page(self, request: Request) -> Response:
        session = await sessions.find(self.gw, request.cookies.get(sessions.COOKIE))
        if session is not None and await sessions.caller_of(self.gw, session) is not None:
            return RedirectResponse(self.site.url("/"), status_code=303)
        return self._login_form(request, 200, None, "")

    def _login_form(self, request: Request, status: int, error: str | None, username: str,
                    method: str = "master_key") -> Response:
        token = secrets.token_urlsafe(24)
        response = self.site.render("login.html", status, login_csrf=token, error=error, username=username,
                                    method=method, has_master=self.gw.settings.master_key is not None)
        response.headers.append("set-cookie", sessions.cookie(sessions.LOGIN_COOKIE, token, 3600,
                                                              sessions.is_tls(request.scope)))
        return response

    async def login(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except LockgateError as err:
            return self.site.render("error.html", err.status, message=err.message)

        def field(name: str) -> str:
            return (form.get(name) or [""])[0]

        method, username = field("method"), field("username").strip()
        expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(expected.encode(), field(sessions.CSRF_FIELD).encode()):
            return self._login_form(request, 403, "The sign-in form expired: please try again.", username, method)
        address = request.client.host if request.client else None
        subject = username if method == "password" else "master key"
        if await self.limiter.blocked(address, subject):
            return self._login_form(request, 429, "Too many failed sign-ins: wait a minute, then try again.",
                                    username, method)
        user_id: str | None = None
        role = PROXY_ADMIN
        if method == "master_key":
            master = self.gw.settings.master_key
            ok = master is not None and hmac.compare_digest(field("master_key").encode(), master.encode())
            error = "That is not the master key."
        elif method == "password":
            row = await credentials.check_password(self.gw, username, field("password")) if username else None
            ok = row is not None
            if row is not None and row.totp_enabled:
                ok = await credentials.totp_accept(self.gw, username, field("totp_code"))
            error = "Wrong user name, password or one-time code."
            if ok:
                assert self.gw.store is not None
                user = await self.gw.store.get("user", username)
                user_id, role = username, (user or {}).get("user_role") or "internal_user"
        else:
            ok, error = False, "Choose a way to sign in."
        if not ok:
            await self.limiter.fail(address, subject)
            log.info("UI sign-in failed (%s) from %s", method if method in ("master_key", "password") else "?",
                     address)
            return self._login_form(request, 401, error, username, method)
        secure = sessions.is_tls(request.scope)
        await sessions.revoke(self.gw, request.cookies.get(sessions.COOKIE))
        cookie = await sessions.open_session(self.gw, user_id=user_id, role=role, via=method, secure=secure)
        response = RedirectResponse(self.site.url("/"), status_code=303)
        response.headers.append("set-cookie", cookie)
        response.headers.append("set-cookie", sessions.cookie(sessions.LOGIN_COOKIE, "", 0, secure))
        return response

    async def logout(self, ui: UIRequest) -> Response:
        await sessions.revoke(self.gw, ui.request.cookies.get(sessions.COOKIE))
        response = RedirectResponse(self.site.url("/login"), status_code=303)
        secure = sessions.is_tls(ui.request.scope)
        response.headers.append("set-cookie", sessions.cookie(sessions.COOKIE, "", 0, secure))
        return response


_NO_PAGE = Page("", "", ())


def _sso_configured(gw: Gateway) -> bool:
    """SSO is on when the SSO module's settings are (general_settings.sso or the GENERIC_* variables)."""
    return getattr(gw.settings, "sso", None) is not None


async def build(gw: Gateway) -> UI:
    return UI(gw, load_pages())


__all__ = ["UI", "Route", "build", "validation_message"]
