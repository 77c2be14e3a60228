"""The signed-in user's own page: who they are, their spend, a new password, and two-factor sign-in
(TOTP: a QR code of its ``otpauth://`` URI to scan, and the secret and the URI to type or paste into an
authenticator app, confirmed by a first code; from then on the sign-in asks for a code)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ...admin import entities as api
from ...admin.common import audit_of
from ...admin.schemas import UserInfoQuery
from ...errors import BadRequest, LockgateError
from ...state import Audit
from .. import credentials, sessions
from ..page import Page, Route, UIRequest


async def _context(ui: UIRequest) -> dict[str, Any]:
    user = None
    totp = False
    if ui.caller.user_id is not None:
        user = await api.user_info(ui.api_call, ui.caller, UserInfoQuery(user_id=ui.caller.user_id))
        row = await credentials.get(ui.gw, ui.caller.user_id)
        totp = bool(row is not None and row.totp_enabled)
    return {"user": user, "totp_enabled": totp, "secret": None, "uri": None, "qr": None, "error": None,
            "notice": None}


async def show(ui: UIRequest) -> Response:
    context = await _context(ui)
    notices = {"password": "Your password was changed; your other sessions were signed out.",
               "totp-on": "Two-factor sign-in is on.", "totp-off": "Two-factor sign-in is off."}
    context["notice"] = notices.get(ui.query("done"))
    return ui.render("pages/account.html", **context)


def _audit(ui: UIRequest) -> Audit:
    return audit_of(ui.api_call, ui.caller)


def _user_id(ui: UIRequest) -> str:
    if ui.caller.user_id is None:
        raise BadRequest("signed in with the master key: there is no user account to change")
    return ui.caller.user_id


async def change_password(ui: UIRequest) -> Response:
    user_id = _user_id(ui)
    context = await _context(ui)
    try:
        if await credentials.check_password(ui.gw, user_id, ui.value("current_password")) is None \
                and ui.session.via == "password":
            raise BadRequest("the current password is wrong")
        if ui.value("new_password") != ui.value("new_password_again"):
            raise BadRequest("the two new passwords differ")
        await credentials.set_password(ui.gw, user_id, ui.value("new_password"), _audit(ui))
    except LockgateError as err:
        context["error"] = err.message
        return ui.render("pages/account.html", err.status, **context)
    await sessions.revoke_user(ui.gw, user_id, keep=ui.session.id)
    return ui.redirect("/account?done=password")


async def totp_begin(ui: UIRequest) -> Response:
    user_id = _user_id(ui)
    context = await _context(ui)
    secret = await credentials.totp_begin(ui.gw, user_id)
    uri = credentials.totp_uri(secret, user_id)
    context.update(secret=secret, uri=uri, qr=credentials.totp_qr(uri), totp_enabled=False)
    return ui.render("pages/account.html", **context)


async def totp_confirm(ui: UIRequest) -> Response:
    user_id = _user_id(ui)
    if await credentials.totp_accept(ui.gw, user_id, ui.value("code"), enable=True, audit=_audit(ui)):
        return ui.redirect("/account?done=totp-on")
    context = await _context(ui)
    row = await credentials.get(ui.gw, user_id)
    if row is not None and row.totp_secret and not row.totp_enabled:
        uri = credentials.totp_uri(row.totp_secret, user_id)
        context.update(secret=row.totp_secret, uri=uri, qr=credentials.totp_qr(uri))
    context["error"] = "That code is not the current one: check the app's clock and try the next code."
    return ui.render("pages/account.html", 400, **context)


async def totp_disable(ui: UIRequest) -> Response:
    user_id = _user_id(ui)
    if not await credentials.totp_accept(ui.gw, user_id, ui.value("code")):
        context = await _context(ui)
        context["error"] = "Turning two-factor sign-in off needs a current code."
        return ui.render("pages/account.html", 400, **context)
    await credentials.totp_disable(ui.gw, user_id, _audit(ui))
    return ui.redirect("/account?done=totp-off")


PAGE = Page(
    slug="account",
    title="My account",
    routes=(
        Route("GET", "", show),
        Route("POST", "/password", change_password),
        Route("POST", "/totp", totp_begin),
        Route("POST", "/totp/confirm", totp_confirm),
        Route("POST", "/totp/disable", totp_disable),
    ),
)
