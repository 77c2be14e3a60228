"""OpenID Connect sign-in for the admin UI (docs/sso.md): the authorization code flow with PKCE.

``GET /sso/key/generate`` (LiteLLM's start path) redirects the browser to the identity provider with a
fresh ``state``, ``nonce`` and S256 code challenge.  Those three (the verifier, not the challenge) and
the redirect URI travel in a short-lived cookie (``lockgate_sso``: HttpOnly, SameSite=Lax, path /sso,
``state_ttl_seconds``) signed with a key derived from the master key, so any instance can finish the
flow and nothing is stored server-side.  ``GET /sso/callback`` checks the state against the cookie,
exchanges the code at the token endpoint (client_secret_post or client_secret_basic, with the PKCE
verifier), verifies the id_token against the provider's JWKS (signature, issuer, audience, expiry,
nonce) and reads the userinfo endpoint when there is one.  Then: the email domain is checked, the user
is created on first sign-in (its role from the role claim through ``role_mappings``, else
``default_role``), added to the teams its groups claim names (by team id or alias), and a UI session is
opened (``ui.sessions.open_session``); the browser lands on ``{root}/ui/``.

Endpoints come from ``{issuer}/.well-known/openid-configuration`` (fetched on first use, kept; a failed
fetch is retried on the next sign-in) or from the GENERIC_* settings; explicit settings win.  Every
failure is a 4xx naming the reason (502 when the provider cannot be reached), as HTML for a browser and
JSON otherwise; nothing secret (code, tokens, verifier, client secret) is logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import orjson

from ..errors import AuthenticationError, BadRequest, LockgateError, PermissionDenied
from ..http import Receive, Scope, Send, send_bytes
from .jwks import JWKSCache, parse_json
from .jwt_auth import claim, decode, header_of, words
from .settings import ROLES, SSOSettings

if TYPE_CHECKING:
    from ..gateway import Gateway

log = logging.getLogger("lockgate.auth")

STATE_COOKIE = "lockgate_sso"
START_PATH = "/sso/key/generate"
CALLBACK_PATH = "/sso/callback"
IDP_TIMEOUT = 10.0
MAX_IDP_BYTES = 1024 * 1024


class IdPUnreachable(LockgateError):
    status = 502
    type = "api_error"
    code = "idp_unreachable"


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    userinfo: str | None
    jwks_uri: str | None
    issuer: str | None


class SSO:
    """The /sso/* routes (an ASGI callable built by app.py on the first /sso request)."""

    def __init__(self, gw: Gateway) -> None:
        settings = gw.settings.sso
        master = gw.settings.master_key
        assert settings is not None and master is not None  # config.py requires both
        self.gw = gw
        self.s: SSOSettings = settings
        self._secret = hashlib.sha256(b"lockgate-sso-state\0" + master.encode()).digest()
        self._endpoints: Endpoints | None = None
        self._jwks: JWKSCache | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].removeprefix("/v1")
        try:
            if scope["method"] != "GET" or path not in (START_PATH, CALLBACK_PATH):
                raise LockgateError(f"no route {scope['method']} {scope['path']}", status=404, type="not_found_error")
            if path == START_PATH:
                await self.start(scope, send)
            else:
                await self.callback(scope, send)
        except LockgateError as err:
            await _error(scope, send, err)
        except Exception as exc:  # never a traceback to the browser
            log.error("SSO %s failed: %s", path, type(exc).__name__, exc_info=exc)
            await _error(scope, send, LockgateError("internal error during sign-in"))

    # ---------------------------------------------------------------- the flow

    async def start(self, scope: Scope, send: Send) -> None:
        ep = await self.endpoints()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        redirect_uri = self.redirect_uri(scope)
        params = {"response_type": "code", "client_id": self.s.client_id, "redirect_uri": redirect_uri,
                  "scope": self.s.scope, "state": state, "nonce": nonce, "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        location = ep.authorization + ("&" if "?" in ep.authorization else "?") + urlencode(params)
        flow = {"s": state, "n": nonce, "v": verifier, "r": redirect_uri,
                "e": int(time.time() + self.s.state_ttl_seconds)}
        cookie = self._cookie(self._sign(flow), int(self.s.state_ttl_seconds), scope)
        await _redirect(send, location, [cookie])

    async def callback(self, scope: Scope, send: Send) -> None:
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        flow = self._unsign(_cookies(scope).get(STATE_COOKIE))
        if flow is None:
            raise BadRequest(f"the sign-in expired or was not started here: start again at {START_PATH}",
                             code="sso_state_missing")
        if "error" in query:
            detail = query.get("error_description")
            raise PermissionDenied(f"the identity provider refused the sign-in: {query['error']}"
                                   + (f" ({detail})" if detail else ""), code="sso_refused")
        if not hmac.compare_digest(query.get("state", ""), flow["s"]):
            raise BadRequest("the sign-in state does not match: start again", code="sso_state_mismatch")
        code = query.get("code")
        if not code:
            raise BadRequest("the identity provider sent no authorization code", code="sso_no_code")
        ep = await self.endpoints()
        tokens = await self._exchange(ep, code, flow["v"], flow["r"])
        claims = await self._identity(ep, tokens, flow["n"])
        user_id = _one(claim(claims, self.s.user_id_attribute))
        if not user_id:
            raise BadRequest(f"the identity provider sent no {self.s.user_id_attribute!r} claim", code="sso_no_user")
        email = _one(claim(claims, self.s.user_email_attribute))
        if self.s.allowed_email_domains and not (
                email and email.lower().rpartition("@")[2] in self.s.allowed_email_domains):
            raise PermissionDenied("this email domain may not sign in (general_settings.sso.allowed_email_domains)",
                                   code="sso_domain_not_allowed")
        role = self.mapped_role(claim(claims, self.s.user_role_attribute))
        groups = words(claim(claims, self.s.team_ids_attribute))
        row = await self.upsert_user(user_id, email, role, groups)
        if row.get("blocked"):
            raise PermissionDenied("this user is blocked", code="user_blocked")
        from ..ui import root_path
        from ..ui.sessions import is_tls, open_session

        session = await open_session(self.gw, user_id=user_id, role=row.get("user_role") or self.s.default_role,
                                     via="sso", secure=is_tls(scope))
        log.info("SSO sign-in of user %r", user_id)
        await _redirect(send, root_path() + "/ui/", [(b"set-cookie", session.encode()), self._cookie("", 0, scope)])

    # ---------------------------------------------------------------- the provider

    async def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            async with self._lock:
                if self._endpoints is None:
                    self._endpoints = await self._discover()
        return self._endpoints

    async def _discover(self) -> Endpoints:
        s = self.s
        found: dict[str, Any] = {}
        if s.issuer:
            url = s.issuer + "/.well-known/openid-configuration"
            found = parse_json(await self._get(url, {}), "the discovery document")
            if found.get("issuer", s.issuer).rstrip("/") != s.issuer:
                raise IdPUnreachable(f"the discovery document names issuer {found.get('issuer')!r}, not {s.issuer!r}")
        authorization = s.authorization_endpoint or found.get("authorization_endpoint")
        token = s.token_endpoint or found.get("token_endpoint")
        if not isinstance(authorization, str) or not isinstance(token, str):
            raise IdPUnreachable("the discovery document names no authorization or token endpoint")
        userinfo = s.userinfo_endpoint or found.get("userinfo_endpoint")
        jwks_uri = s.jwks_uri or found.get("jwks_uri")
        return Endpoints(authorization, token, userinfo if isinstance(userinfo, str) else None,
                         jwks_uri if isinstance(jwks_uri, str) else None, s.issuer or found.get("issuer"))

    async def _exchange(self, ep: Endpoints, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier}
        headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        secret = self.s.client_secret or ""
        if self.s.token_auth_method == "client_secret_basic":
            pair = f"{_form(self.s.client_id)}:{_form(secret)}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form["client_id"] = self.s.client_id
            if secret:
                form["client_secret"] = secret
        try:
            reply = await self.gw.upstream.post(ep.token, headers, urlencode(form).encode(), IDP_TIMEOUT, MAX_IDP_BYTES)
        except LockgateError:
            raise IdPUnreachable("the identity provider's token endpoint could not be reached") from None
        try:
            body = parse_json(reply.body, "the token endpoint's answer")
        except ValueError as exc:
            if reply.status == 200:
                raise IdPUnreachable(str(exc)) from None
            body = {}
        if reply.status != 200:
            error = body.get("error", f"HTTP {reply.status}")
            detail = body.get("error_description")
            raise BadRequest(f"the identity provider refused the code: {error}" + (f" ({detail})" if detail else ""),
                             code="sso_token_refused")
        if not isinstance(body.get("access_token"), str) and not isinstance(body.get("id_token"), str):
            raise IdPUnreachable("the token endpoint answered without a token")
        return body

    async def _identity(self, ep: Endpoints, tokens: dict[str, Any], nonce: str) -> dict[str, Any]:
        """The verified id_token's claims, with the userinfo endpoint's on top (same ``sub``)."""
        claims: dict[str, Any] = {}
        id_token = tokens.get("id_token")
        if isinstance(id_token, str) and ep.jwks_uri:
            if self._jwks is None:
                self._jwks = JWKSCache(lambda url: self._get(url, {}), (ep.jwks_uri,), 600.0, 10.0)
            alg, kid = header_of(id_token)
            try:
                claims = await decode(id_token, alg, kid, self._jwks, (self.s.client_id,), ep.issuer, 30.0)
            except AuthenticationError as err:
                raise BadRequest(f"the id_token is not valid: {err.message}", code="sso_bad_id_token") from None
            if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
                raise BadRequest("the id_token's nonce does not match this sign-in", code="sso_bad_id_token")
        access = tokens.get("access_token")
        if ep.userinfo and isinstance(access, str):
            info = parse_json(await self._get(ep.userinfo, {"authorization": f"Bearer {access}"}), "userinfo")
            if claims and info.get("sub") not in (None, claims.get("sub")):
                raise BadRequest("the userinfo endpoint names another subject than the id_token",
                                 code="sso_bad_userinfo")
            claims = {**claims, **info}
        if not claims:
            raise BadRequest("no verifiable identity: the provider sent no id_token this gateway can verify "
                             "(no jwks_uri) and there is no userinfo endpoint", code="sso_no_identity")
        return claims

    async def _get(self, url: str, headers: dict[str, str]) -> bytes:
        try:
            reply = await self.gw.upstream.get(url, {"accept": "application/json", **headers}, IDP_TIMEOUT)
        except LockgateError:
            raise IdPUnreachable(f"the identity provider could not be reached ({url})") from None
        if reply.status != 200:
            raise IdPUnreachable(f"the identity provider answered HTTP {reply.status} ({url})")
        if len(reply.body) > MAX_IDP_BYTES:
            raise IdPUnreachable(f"the identity provider's answer is over 1 MB ({url})")
        return reply.body

    # ---------------------------------------------------------------- users and teams

    def mapped_role(self, value: Any) -> str | None:
        """The first value of the role claim that ``role_mappings`` (or a Lockgate role name) maps."""
        for item in words(value):
            role = self.s.role_mappings.get(item) or (item if item in ROLES else None)
            if role is not None:
                return role
        return None

    async def upsert_user(self, user_id: str, email: str | None, role: str | None, groups: list[str]
                          ) -> dict[str, Any]:
        """First sign-in creates the user; the role follows the role claim when there is one; teams the
        groups claim names are joined (never left)."""
        from ..state import Audit

        store = self.gw.store
        assert store is not None
        audit = Audit(changed_by="sso")
        changed = False
        row = await store.get("user", user_id)
        if row is None:
            try:
                row = await store.create("user", {"user_id": user_id, "user_email": email,
                                                  "user_role": role or self.s.default_role}, audit)
            except Exception:  # created meanwhile (another instance, a double click): read it
                row = await store.get("user", user_id)
                if row is None:
                    raise
            changed = True
        elif role is not None and row.get("user_role") != role:
            updated = await store.update("user", user_id, {"user_role": role}, audit)
            row = updated[1] if updated else row
            changed = True
        member_of = await store.memberships(user_id)
        for group in dict.fromkeys(groups):
            teams = [group] if await store.get("team", group) is not None else [
                t["team_id"] for t in await store.find("team", team_alias=group)]
            for team_id in teams:
                if team_id not in member_of:
                    await store.set_members(team_id, [{"user_id": user_id, "role": "member"}], [], audit)
                    member_of[team_id] = "member"
                    changed = True
        if changed:
            for listener in list(self.gw.change_listeners):
                result = listener("user", user_id)
                if asyncio.iscoroutine(result):
                    await result
        return row

    # ---------------------------------------------------------------- cookies and URLs

    def redirect_uri(self, scope: Scope) -> str:
        """``{PROXY_BASE_URL}/sso/callback``, else the URL this request came in on (set PROXY_BASE_URL
        behind a proxy that rewrites the host or the scheme)."""
        if self.s.proxy_base_url:
            return self.s.proxy_base_url + CALLBACK_PATH
        from ..ui import root_path

        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1") or "{}:{}".format(*scope["server"])
        return f"{scope.get('scheme', 'http')}://{host}{root_path()}{CALLBACK_PATH}"

    def _cookie(self, value: str, max_age: int, scope: Scope) -> tuple[bytes, bytes]:
        from ..ui import root_path
        from ..ui.sessions import is_tls

        attrs = f"{STATE_COOKIE}={value}; Path={root_path()}/sso; Max-Age={max_age}; HttpOnly; SameSite=Lax"
        return b"set-cookie", (attrs + ("; Secure" if is_tls(scope) else "")).encode()

    def _sign(self, flow: dict[str, Any]) -> str:
        payload = _b64(orjson.dumps(flow))
        return payload + "." + _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def _unsign(self, value: str | None) -> dict[str, Any] | None:
        if not value or len(value) > 2048 or "." not in value:
            return None
        payload, _, signature = value.partition(".")
        expected = _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return None
        try:
            flow = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(flow, dict) or not isinstance(flow.get("e"), int) or flow["e"] < time.time():
            return None
        return flow


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _form(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _one(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "" else None


def _cookies(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                out.setdefault(key, val)
    return out


async def _redirect(send: Send, location: str, cookies: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"location", location.encode()), (b"cache-control", b"no-store"), *cookies]
    await send_bytes(send, 302, b"", headers, (b"content-type", b"text/plain"))


async def _error(scope: Scope, send: Send, err: LockgateError) -> None:
    accept = dict(scope["headers"]).get(b"accept", b"")
    if b"text/html" in accept:
        page = (f"<!doctype html><title>Sign-in failed</title><h1>Sign-in failed</h1><p>{html.escape(err.message)}</p>"
                f'<p><a href="{START_PATH}">Try again</a></p>')
        await send_bytes(send, err.status, page.encode(), [(b"cache-control", b"no-store")],
                         (b"content-type", b"text/html; charset=utf-8"))
        return
    body = {"error": {"message": err.message, "type": err.type, "param": None, "code": err.code}}
    await send_bytes(send, err.status, orjson.dumps(body), [(b"cache-control", b"no-store")])
