"""OpenID Connect sign-in (docs/sso.md), end to end: a real provider on loopback (tests/oidc_provider.py),
a real gateway, the browser's redirects followed by hand with httpx (cookies kept by the client).

The flow runs on the embedded default and on PostgreSQL + Redis; the explicit GENERIC_* endpoints (no
discovery, userinfo only, client_secret_basic, PROXY_BASE_URL) on the embedded default.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests import oidc_provider
from tests.conftest import MASTER_KEY, start_gateway
from tests.test_governance_e2e import REDIS_URL, _create_db, _drop_db
from tests.test_governance_e2e import config as governed_config

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}

USERS = {
    "alice": {"email": "alice@example.com", "role": "admin"},
    "carol": {"email": "carol@example.com", "role": ["staff", "viewer"]},
    "dave": {"email": "dave@example.com"},
    "bob": {"email": "bob@elsewhere.org"},
}


class Env:
    def __init__(self, name: str, mocks, tmp) -> None:
        self.provider = oidc_provider.start(users=USERS, groups={"alice": ["eng", "Research", "not-a-team"]})
        self.db = None
        general: dict = {}
        if name == "pg_redis":
            self.db = "lockgate_sso_" + uuid.uuid4().hex[:10]
            asyncio.run(_create_db(self.db))
            general = {"database_url": f"postgresql://postgres@127.0.0.1:5432/{self.db}", "redis_url": REDIS_URL}
        cfg = governed_config(mocks, general, {"redis_key_prefix": f"lockgate-sso-{uuid.uuid4().hex[:8]}:"})
        cfg["general_settings"]["sso"] = {
            "issuer": self.provider.issuer, "client_id": oidc_provider.CLIENT_ID,
            "client_secret": oidc_provider.CLIENT_SECRET, "allowed_email_domains": ["example.com"],
            "role_mappings": {"admin": "proxy_admin", "viewer": "proxy_admin_viewer"},
        }
        self.gw = start_gateway(cfg, tmp)
        self.provider.redirect_uris = [self.gw.url + "/sso/callback"]  # only the gateway's callback
        self.research = "team-" + uuid.uuid4().hex[:6]
        for body in ({"team_id": "eng"}, {"team_id": self.research, "team_alias": "Research"}):
            r = httpx.post(self.gw.url + "/team/new", headers=ADMIN, json=body, timeout=10)
            assert r.status_code == 200, r.text

    def close(self) -> None:
        self.gw.process.terminate()
        self.gw.process.wait(10)
        self.provider.stop()
        if self.db:
            asyncio.run(_drop_db(self.db))


@pytest.fixture(scope="module", params=["embedded", "pg_redis"])
def env(request, mocks, tmp_path_factory):
    e = Env(request.param, mocks, tmp_path_factory.mktemp(f"sso-{request.param}"))
    yield e
    e.close()


def start(gw, client: httpx.Client) -> str:
    """GET /sso/key/generate -> the provider's /authorize URL (the state cookie set on the client)."""
    r = client.get(gw.url + "/sso/key/generate")
    assert r.status_code == 302, r.text
    assert "lockgate_sso=" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
    return r.headers["location"]


def authorize(client: httpx.Client, url: str) -> str:
    """The provider signs the user in and redirects back: the callback URL."""
    r = client.get(url)
    assert r.status_code == 302, r.text
    return r.headers["location"]


def sign_in(gw, provider, user: str) -> tuple[httpx.Client, httpx.Response]:
    provider.login_as(user)
    client = httpx.Client(timeout=10, follow_redirects=False)
    return client, client.get(authorize(client, start(gw, client)))


def user_info(gw, user_id: str) -> httpx.Response:
    return httpx.get(gw.url + "/user/info", headers=ADMIN, params={"user_id": user_id}, timeout=10)


def test_first_sign_in_creates_the_user_with_role_and_teams(env):
    client, r = sign_in(env.gw, env.provider, "alice")
    assert r.status_code == 302, r.text
    assert r.headers["location"] == "/ui/"
    cookies = r.headers.get_list("set-cookie")
    assert any(c.startswith("lockgate_session=") for c in cookies)
    assert any(c.startswith("lockgate_sso=;") or "lockgate_sso=; " in c for c in cookies)  # the state cookie is gone
    # the request the provider got: PKCE S256, a state and a nonce; the token request proved the verifier
    asked = env.provider.authorize_requests[-1]
    assert asked["code_challenge_method"] == "S256" and asked["state"] and asked["nonce"]
    assert asked["redirect_uri"] == env.gw.url + "/sso/callback"
    token_request = env.provider.token_requests[-1]
    assert token_request["code_verifier"] and token_request["client_secret"] == oidc_provider.CLIENT_SECRET
    assert not token_request["authorization"]  # client_secret_post, the default
    info = user_info(env.gw, "alice")
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["user_info"]["user_role"] == "proxy_admin" and body["user_info"]["user_email"] == "alice@example.com"
    assert sorted(t["team_id"] for t in body["teams"]) == sorted(["eng", env.research])  # by id and by alias
    # the session opens the UI
    home = client.get(env.gw.url + "/ui/")
    assert home.status_code == 303 and "/login" not in home.headers["location"], home.headers
    page = client.get(env.gw.url + home.headers["location"])
    assert page.status_code == 200, page.text
    assert httpx.get(env.gw.url + "/ui/", timeout=10).headers["location"].endswith("/ui/login")  # no session
    # a second sign-in finds the same user (no duplicate, no error)
    _, again = sign_in(env.gw, env.provider, "alice")
    assert again.status_code == 302 and again.headers["location"] == "/ui/"


def test_roles_are_mapped_or_default(env):
    for user, role in (("carol", "proxy_admin_viewer"), ("dave", "internal_user_viewer")):
        _, r = sign_in(env.gw, env.provider, user)
        assert r.status_code == 302, r.text
        assert user_info(env.gw, user).json()["user_info"]["user_role"] == role


def test_disallowed_domain_is_refused(env):
    _, r = sign_in(env.gw, env.provider, "bob")
    assert r.status_code == 403 and r.json()["error"]["code"] == "sso_domain_not_allowed"
    assert user_info(env.gw, "bob").status_code == 404  # never created
    _, page = sign_in(env.gw, env.provider, "bob")
    assert page.status_code == 403


def test_tampered_or_missing_state_is_refused(env):
    env.provider.login_as("dave")
    client = httpx.Client(timeout=10, follow_redirects=False)
    callback = authorize(client, start(env.gw, client))
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    tampered = f"{env.gw.url}/sso/callback?{urlencode({**query, 'state': 'x' + query['state']})}"
    r = client.get(tampered)
    assert r.status_code == 400 and r.json()["error"]["code"] == "sso_state_mismatch"
    # another browser (no state cookie) cannot finish this sign-in
    r = httpx.get(callback, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "sso_state_missing"
    # a forged state cookie (its signature does not match) counts as none
    cookie = client.cookies.get("lockgate_sso")
    forged = cookie.split(".")[0] + ".AAAA"
    r = httpx.get(callback, cookies={"lockgate_sso": forged}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "sso_state_missing"
    # a browser asking for HTML gets a page, not JSON
    r = httpx.get(callback, headers={"accept": "text/html"}, timeout=10)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html") and "Sign-in failed" in r.text


def test_a_code_from_another_sign_in_fails_pkce_at_the_provider(env):
    """Code injection: a code issued for one sign-in (its PKCE challenge) presented with another sign-in's
    state cookie: the gateway sends that sign-in's verifier and the provider refuses it."""
    env.provider.login_as("dave")
    client = httpx.Client(timeout=10, follow_redirects=False)
    first = authorize(client, start(env.gw, client))
    code = parse_qs(urlsplit(first).query)["code"][0]
    second = authorize(client, start(env.gw, client))  # a new sign-in: the cookie now holds its state + verifier
    state = parse_qs(urlsplit(second).query)["state"][0]
    r = client.get(f"{env.gw.url}/sso/callback?{urlencode({'code': code, 'state': state})}")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "sso_token_refused" and "PKCE" in r.json()["error"]["message"]


def test_provider_error_is_a_clear_4xx(env):
    env.provider.deny = "access_denied"
    try:
        _, r = sign_in(env.gw, env.provider, "dave")
    finally:
        env.provider.deny = None
    assert r.status_code == 403 and "access_denied" in r.json()["error"]["message"]


def test_no_sso_configured_means_no_route(gateway):
    r = httpx.get(gateway.url + "/sso/key/generate", timeout=10)
    assert r.status_code == 404


def test_explicit_generic_endpoints_userinfo_and_basic_auth(mocks, tmp_path):
    provider = oidc_provider.start(users={"erin": {"email": "erin@example.com", "role": "proxy_admin"}},
                                   groups={"erin": ["eng"]})
    cfg = governed_config(mocks)
    cfg["general_settings"]["sso"] = {"token_auth_method": "client_secret_basic"}
    base = "http://gateway.invalid"
    gw = start_gateway(cfg, tmp_path, {
        "GENERIC_CLIENT_ID": oidc_provider.CLIENT_ID, "GENERIC_CLIENT_SECRET": oidc_provider.CLIENT_SECRET,
        "GENERIC_AUTHORIZATION_ENDPOINT": provider.issuer + "/authorize",
        "GENERIC_TOKEN_ENDPOINT": provider.issuer + "/token",
        "GENERIC_USERINFO_ENDPOINT": provider.issuer + "/userinfo",
        "GENERIC_USER_ROLE_ATTRIBUTE": "role", "GENERIC_SCOPE": "openid email", "PROXY_BASE_URL": base,
    })
    try:
        provider.redirect_uris = [base + "/sso/callback"]
        client = httpx.Client(timeout=10, follow_redirects=False)
        url = start(gw, client)
        assert parse_qs(urlsplit(url).query)["scope"] == ["openid email"]
        callback = authorize(client, url)
        assert callback.startswith(base + "/sso/callback?")  # PROXY_BASE_URL made the redirect URI
        r = client.get(gw.url + callback[len(base):])  # the browser reaching the gateway behind that name
        assert r.status_code == 302, r.text
        token_request = provider.token_requests[-1]
        assert token_request["authorization"].startswith("Basic ") and "client_secret" not in token_request
        info = user_info(gw, "erin").json()
        assert info["user_info"]["user_role"] == "proxy_admin"  # a Lockgate role name is taken as it is
        assert [t["team_id"] for t in info["teams"]] == []  # no team "eng" on this gateway: nothing joined
    finally:
        gw.process.terminate()
        gw.process.wait(10)
        provider.stop()


def test_settings_from_the_environment_and_errors():
    from lockgate import config
    from lockgate.auth.settings import sso_settings

    warnings: list[str] = []
    env = {"GENERIC_CLIENT_ID": "c", "GENERIC_AUTHORIZATION_ENDPOINT": "https://idp/authorize",
           "GENERIC_TOKEN_ENDPOINT": "https://idp/token", "GENERIC_CLIENT_STATE": "fixed"}
    s = sso_settings({}, {"default_internal_user_params": {"user_role": "internal_user"}}, warnings, env)
    assert s is not None and s.default_role == "internal_user" and s.user_id_attribute == "sub"
    assert any("GENERIC_CLIENT_STATE" in w for w in warnings)
    assert sso_settings({}, {}, [], {}) is None  # not configured: nothing
    with pytest.raises(ValueError, match="issuer"):
        sso_settings({"sso": {"client_id": "c"}}, {}, [], {})
    with pytest.raises(ValueError, match="role"):
        sso_settings({"sso": {"client_id": "c", "issuer": "https://idp", "role_mappings": {"x": "god"}}}, {}, [], {})
    with pytest.raises(config.ConfigError, match="master_key"):
        config.from_dict({"general_settings": {"sso": {"client_id": "c", "issuer": "https://idp"}}})


def test_id_token_with_another_nonce_is_refused(env):
    env.provider.nonce_override = "replayed-nonce"
    try:
        _, r = sign_in(env.gw, env.provider, "dave")
    finally:
        env.provider.nonce_override = None
    assert r.status_code == 400 and r.json()["error"]["code"] == "sso_bad_id_token", r.text


def test_unreachable_provider_is_a_clear_502(mocks, tmp_path):
    from tests.conftest import free_port

    cfg = governed_config(mocks)
    cfg["general_settings"]["sso"] = {"issuer": f"http://127.0.0.1:{free_port()}", "client_id": "c"}
    gw = start_gateway(cfg, tmp_path)
    try:
        r = httpx.get(gw.url + "/sso/key/generate", timeout=15)
        assert r.status_code == 502 and r.json()["error"]["code"] == "idp_unreachable", r.text
        assert "Traceback" not in gw.log()
    finally:
        gw.process.terminate()
        gw.process.wait(10)


def test_blocked_user_cannot_sign_in(env):
    user = "frank-" + uuid.uuid4().hex[:6]
    env.provider.users[user] = {"sub": user, "email": f"{user}@example.com"}
    _, first = sign_in(env.gw, env.provider, user)
    assert first.status_code == 302, first.text
    r = httpx.post(env.gw.url + "/user/update", headers=ADMIN, json={"user_id": user, "blocked": True}, timeout=10)
    assert r.status_code == 200, r.text
    _, again = sign_in(env.gw, env.provider, user)
    assert again.status_code == 403 and again.json()["error"]["code"] == "user_blocked"
    assert not any(c.startswith("lockgate_session=") for c in again.headers.get_list("set-cookie"))
