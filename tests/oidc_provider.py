"""A small but real OpenID Connect provider on loopback, for the JWT-auth, SSO and UI tests.

It does what an IdP does on the wire, with keys generated here (cryptography):

- ``GET /.well-known/openid-configuration``: the discovery document;
- ``GET /authorize``: checks client_id, the registered redirect URI and a S256 PKCE challenge, then signs in
  the configured test user at once (no login page) and redirects back with a one-time ``code`` and the
  ``state`` (or with ``error=...`` when ``deny`` is set);
- ``POST /token``: the authorization code grant; checks the client's credentials (``client_secret_post`` or
  ``client_secret_basic``), the code (once only), the same ``redirect_uri`` and the PKCE verifier; returns an
  access token and an id_token (RS256, with the nonce) signed by the current key;
- ``GET /userinfo``: the user's claims for a valid access token;
- ``GET /jwks``: the published public keys (``rotate``, ``publish``: key rotation; ``down``: 503).

Usage::

    provider = oidc_provider.start(users={"alice": {"email": "alice@example.com", "role": "admin"}},
                                   groups={"alice": ["eng"]})
    provider.issuer, provider.jwks_url, provider.sign({...}), provider.login_as("alice"), provider.stop()
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

CLIENT_ID = "lockgate-test-client"
CLIENT_SECRET = "test-client-secret-0123456789"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        jwk = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}


def new_key(kid: str | None = None, alg: str = "RS256") -> SigningKey:
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg.startswith(("RS", "PS"))
               else ec.generate_private_key(ec.SECP256R1()))
    return SigningKey(kid or "k-" + secrets.token_hex(4), alg, private)


@dataclass
class _Grant:
    user: str
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    scope: str


@dataclass
class OIDCProvider:
    users: dict[str, dict[str, Any]]
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    redirect_uris: list[str] | None = None  # None: any redirect URI is accepted (and recorded)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)  # kids served by /jwks
    current: str = ""  # the kid that signs id_tokens
    signed_in: str = ""  # the user /authorize signs in
    deny: str | None = None  # /authorize answers with this OAuth error instead
    down: bool = False  # /jwks answers 503
    nonce_override: str | None = None  # id_tokens carry this nonce instead of the one asked for (a replay)
    jwks_hits: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    _codes: dict[str, _Grant] = field(default_factory=dict)
    _access: dict[str, str] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    # ---------------------------------------------------------------- test API

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/jwks"

    def login_as(self, user: str) -> None:
        assert user in self.users, user
        self.signed_in = user

    def add_key(self, kid: str | None = None, alg: str = "RS256", publish: bool = True) -> str:
        key = new_key(kid, alg)
        self.keys[key.kid] = key
        if publish:
            self.published.append(key.kid)
        return key.kid

    def rotate(self, alg: str = "RS256") -> str:
        """A new signing key, published alone (the old ones are withdrawn)."""
        kid = self.add_key(alg=alg, publish=False)
        self.published = [kid]
        self.current = kid
        return kid

    def sign(self, claims: dict[str, Any], kid: str | None = None, headers: dict[str, Any] | None = None,
             key: SigningKey | None = None) -> str:
        signer = key or self.keys[kid or self.current]
        return jwt.encode(claims, signer.private, algorithm=signer.alg,
                          headers={"kid": signer.kid, **(headers or {})})

    def token(self, lifetime: float = 300, kid: str | None = None, **claims: Any) -> str:
        """A signed access token for API clients: iss, iat, exp set; the rest as given."""
        now = int(time.time())
        return self.sign({"iss": self.issuer, "iat": now, "exp": now + int(lifetime), **claims}, kid)

    def stop(self) -> None:
        assert self._loop is not None and self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    # ---------------------------------------------------------------- the provider

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/userinfo", self._userinfo)
        app.router.add_get("/jwks", self._jwks)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.issuer, "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token", "userinfo_endpoint": self.issuer + "/userinfo",
            "jwks_uri": self.jwks_url, "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        })

    async def _authorize(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.authorize_requests.append(q)
        if q.get("response_type") != "code":
            return _oauth_error(400, "unsupported_response_type")
        if q.get("client_id") != self.client_id:
            return _oauth_error(400, "invalid_client", "unknown client_id")
        redirect = q.get("redirect_uri", "")
        if not redirect or (self.redirect_uris is not None and redirect not in self.redirect_uris):
            return _oauth_error(400, "invalid_request", "redirect_uri is not registered")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return _oauth_error(400, "invalid_request", "PKCE with S256 is required")
        state = {"state": q["state"]} if "state" in q else {}
        if self.deny:
            raise web.HTTPFound(redirect + "?" + urlencode({"error": self.deny, **state}))
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(self.signed_in, q["client_id"], redirect, q["code_challenge"], q.get("nonce"),
                                   q.get("scope", ""))
        raise web.HTTPFound(redirect + "?" + urlencode({"code": code, **state}))

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append({**form, "authorization": request.headers.get("Authorization", "")})
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            return _oauth_error(401, "invalid_client")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type")
        grant = self._codes.pop(form.get("code", ""), None)  # one use only
        if grant is None or grant.client_id != client_id:
            return _oauth_error(400, "invalid_grant", "unknown or used code")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error(400, "invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or digest != grant.challenge:
            return _oauth_error(400, "invalid_grant", "PKCE verification failed")
        user = self.users[grant.user]
        now = int(time.time())
        id_claims = {"iss": self.issuer, "sub": user["sub"], "aud": client_id, "iat": now, "exp": now + 300,
                     **({"nonce": self.nonce_override or grant.nonce} if grant.nonce else {}), **user}
        access = secrets.token_urlsafe(24)
        self._access[access] = grant.user
        return web.json_response({"access_token": access, "token_type": "Bearer", "expires_in": 300,
                                  "id_token": self.sign(id_claims), "scope": grant.scope})

    async def _userinfo(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        user = self._access.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if user is None:
            return _oauth_error(401, "invalid_token")
        return web.json_response(self.users[user])

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_hits += 1
        if self.down:
            return web.Response(status=503, text="unavailable")
        return web.json_response({"keys": [self.keys[k].public_jwk() for k in self.published]})


def _oauth_error(status: int, error: str, description: str = "") -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def start(users: dict[str, dict[str, Any]] | None = None, groups: dict[str, list[str]] | None = None,
          redirect_uris: list[str] | None = None, alg: str = "RS256", **options: Any) -> OIDCProvider:
    """Start a provider on a free loopback port.  ``users``: user name -> claims (``sub`` defaults to the
    name); ``groups``: user name -> group names (the ``groups`` claim)."""
    users = users or {"alice": {"email": "alice@example.com", "name": "Alice"}}
    claims = {name: {"sub": name, **c, **({"groups": groups[name]} if groups and name in groups else {})}
              for name, c in users.items()}
    provider = OIDCProvider(users=claims, redirect_uris=redirect_uris, **options)
    provider.signed_in = next(iter(claims))
    provider.current = provider.add_key(alg=alg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        provider.port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def run() -> web.AppRunner:
        runner = web.AppRunner(provider.app(), handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", provider.port).start()
        return runner

    provider._runner = asyncio.run_coroutine_threadsafe(run(), loop).result(10)
    provider._loop = loop
    return provider
