"""JWT auth for API clients (general_settings.enable_jwt_auth, litellm_jwtauth; docs/sso.md), end to end.

A real OpenID Connect provider runs on loopback (tests/oidc_provider.py) with keys generated here; tokens
are signed here and sent by the official SDKs as their api_key.  The governed tests run on the embedded
default and on PostgreSQL + Redis with two gateway instances (fail, never skip, when those are
unreachable); key rotation, a flood
of unknown key ids and a provider that is down run on the embedded default.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import anthropic
import httpx
import openai
import pytest

from tests import oidc_provider
from tests.conftest import MASTER_KEY, free_port, start_gateway
from tests.test_governance_e2e import REDIS_URL, _create_db, _drop_db
from tests.test_governance_e2e import config as governed_config

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
AUDIENCE = "lockgate-api"

JWT_SETTINGS = {
    "team_id_jwt_field": "team", "user_id_jwt_field": "sub", "user_email_jwt_field": "email",
    "user_id_upsert": True, "end_user_id_jwt_field": "customer",
    "team_allowed_routes": ["openai_routes", "anthropic_routes", "info_routes"],
}


def jwt_config(mocks, general=None, governance=None, jwtauth=None) -> dict:
    cfg = governed_config(mocks, general, governance)
    cfg["general_settings"].update({"enable_jwt_auth": True, "litellm_jwtauth": {**JWT_SETTINGS, **(jwtauth or {})}})
    return cfg


class Env:
    def __init__(self, name: str, mocks, tmp) -> None:
        self.name = name
        self.provider = oidc_provider.start()
        self.db = None
        general: dict = {}
        governance: dict = {}
        if name == "pg_redis":
            self.db = "lockgate_jwt_" + uuid.uuid4().hex[:10]
            asyncio.run(_create_db(self.db))
            self.prefix = f"lockgate-jwt-{uuid.uuid4().hex[:10]}:"
            general = {"database_url": f"postgresql://postgres@127.0.0.1:5432/{self.db}", "redis_url": REDIS_URL}
            governance = {"redis_key_prefix": self.prefix}
        env = {"JWT_PUBLIC_KEY_URL": self.provider.jwks_url, "JWT_AUDIENCE": AUDIENCE}
        self.gw = start_gateway(jwt_config(mocks, general, governance), tmp, env)
        self.b = self.gw  # shared mode: a second instance on the same database and Redis
        if name == "pg_redis":
            (tmp / "b").mkdir()
            self.b = start_gateway(jwt_config(mocks, general, governance), tmp / "b", env)

    def token(self, **claims) -> str:
        claims.setdefault("aud", AUDIENCE)
        claims.setdefault("sub", "user-" + uuid.uuid4().hex[:8])
        return self.provider.token(**claims)

    def close(self) -> None:
        for gw in {id(self.gw): self.gw, id(self.b): self.b}.values():
            gw.process.terminate()
            gw.process.wait(10)
        self.provider.stop()
        if self.db:
            asyncio.run(_drop_db(self.db))
            import redis

            r = redis.Redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(match=self.prefix + "*"))
            if keys:
                r.delete(*keys)


@pytest.fixture(scope="module", params=["embedded", "pg_redis"])
def env(request, mocks, tmp_path_factory):
    e = Env(request.param, mocks, tmp_path_factory.mktemp(f"jwt-{request.param}"))
    yield e
    e.close()


def new_team(gw, **fields) -> str:
    team_id = "team-" + uuid.uuid4().hex[:8]
    r = httpx.post(gw.url + "/team/new", headers=ADMIN, json={"team_id": team_id, **fields}, timeout=10)
    assert r.status_code == 200, r.text
    return team_id


def oai(gw, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=token, max_retries=0, timeout=20)


def ask(gw, token: str, model: str = "priced-mock"):
    return oai(gw, token).chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])


def wait_rows(gw, **params) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        rows = httpx.get(gw.url + "/spend/logs", headers=ADMIN, params=params, timeout=10).json()["data"]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


# ------------------------------------------------------------------------------------ governed like the team


def test_team_token_is_governed_and_recorded_as_its_team(env):
    gw = env.gw
    team = new_team(gw, models=["priced-mock"])
    user = "user-" + uuid.uuid4().hex[:8]
    token = env.token(team=team, sub=user, email=f"{user}@example.com", customer="cust-" + user)
    answer = ask(gw, token)
    assert answer.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as refused:  # the team's model access
        ask(gw, token, "mock-model")
    assert refused.value.body["code"] == "model_access_denied"
    rows = wait_rows(gw, team_id=team)
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["team_id"], row["user_id"], row["end_user"], row["api_key"]) == (team, user, "cust-" + user, None)
    assert row["spend"] > 0
    # user_id_upsert: the user exists now, with the email of the token
    info = httpx.get(gw.url + "/user/info", headers=ADMIN, params={"user_id": user}, timeout=10)
    assert info.status_code == 200 and info.json()["user_info"]["user_email"] == f"{user}@example.com"
    # the team's spend counts it
    spent = httpx.get(gw.url + "/team/info", headers=ADMIN, params={"team_id": team}, timeout=10).json()
    deadline = time.monotonic() + 10
    while not (spent.get("team_info") or spent).get("spend") and time.monotonic() < deadline:
        time.sleep(0.1)
        spent = httpx.get(gw.url + "/team/info", headers=ADMIN, params={"team_id": team}, timeout=10).json()
    assert (spent.get("team_info") or spent)["spend"] == pytest.approx(row["spend"])


def test_team_budget_applies_to_its_tokens(env):
    team = new_team(env.gw, max_budget=1e-6)
    token = env.token(team=team)
    ask(env.gw, token)  # the first request spends past the budget
    with pytest.raises(openai.RateLimitError) as refused:
        ask(env.b, env.token(team=team))  # another member's token (another instance): the same team budget
    assert "team budget exceeded" in refused.value.body["message"]
    assert refused.value.status_code == 429


def test_rate_limit_is_shared_with_the_teams_keys(env):
    if time.time() % 60 > 50:  # fixed 60 s windows: keep the burst inside one
        time.sleep(60 - time.time() % 60 + 0.2)
    team = new_team(env.gw, rpm_limit=2)
    r = httpx.post(env.gw.url + "/key/generate", headers=ADMIN, json={"team_id": team}, timeout=10)
    key = r.json()["key"]
    assert ask(env.gw, key).choices  # the team's virtual key
    token = env.token(team=team)
    assert ask(env.b, token).choices  # a token of the same team (on the other instance in shared mode)
    with pytest.raises(openai.RateLimitError) as refused:
        ask(env.b, env.token(team=team))
    assert "team rpm limit" in refused.value.body["message"]


def test_unknown_team_is_refused(env):
    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(env.gw, env.token(team="no-such-team-" + uuid.uuid4().hex[:6]))
    assert refused.value.body["code"] == "team_not_found"
    with pytest.raises(openai.PermissionDeniedError):  # no team, no user, no admin scope
        ask(env.gw, env.provider.token(aud=AUDIENCE))


def test_admin_scope_token_uses_the_management_api(env):
    subject = "admin-" + uuid.uuid4().hex[:8]
    admin = env.token(scope="openid litellm_proxy_admin", sub=subject)
    r = httpx.post(env.gw.url + "/key/generate", headers={"Authorization": f"Bearer {admin}"},
                   json={"models": ["mock-model"]}, timeout=10)
    assert r.status_code == 200, r.text
    assert ask(env.gw, r.json()["key"], "mock-model").choices  # the key it made works
    # LiteLLM's default admin_allowed_routes: management, spend and info routes, no model calls
    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(env.gw, admin, "mock-model")
    assert refused.value.body["code"] == "route_not_allowed"
    # a team member's token may not manage keys (team_allowed_routes has no management routes)
    member = env.token(team=new_team(env.gw))
    r = httpx.post(env.gw.url + "/key/generate", headers={"Authorization": f"Bearer {member}"}, json={},
                   timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "route_not_allowed"
    # the audit log names the token's subject
    audit = httpx.get(env.gw.url + "/audit/logs", headers=ADMIN, params={"page_size": 1000}, timeout=10).json()
    assert any(a["changed_by"] == f"jwt:{subject}" and a["table_name"] == "keys" for a in audit["data"])


def test_invalid_tokens_are_401_in_each_dialect(env):
    team = new_team(env.gw)
    p = env.provider
    now = int(time.time())
    stranger = oidc_provider.new_key(kid=p.current)  # same kid, a key the provider never published
    outsider = oidc_provider.new_key()  # a kid the provider does not know
    bad = {
        "expired": env.token(team=team, exp=now - 3600, iat=now - 7200),
        "wrong audience": env.token(team=team, aud="someone-else"),
        "bad signature": p.sign({"aud": AUDIENCE, "team": team, "exp": now + 300}, key=stranger),
        "unknown kid": p.sign({"aud": AUDIENCE, "team": team, "exp": now + 300}, key=outsider),
        "no exp": p.sign({"aud": AUDIENCE, "team": team}),
        "not a jwt": "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
    }
    for name, token in bad.items():
        with pytest.raises(openai.AuthenticationError) as refused:
            ask(env.gw, token, "mock-model")
        assert refused.value.status_code == 401, name
        assert refused.value.body["type"] == "authentication_error", name
    expired = bad["expired"]
    assert "expired" in httpx.post(env.gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {expired}"},
                                   json={"model": "mock-model", "messages": []}, timeout=10).json()["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as refused_a:
        anthropic.Anthropic(base_url=env.gw.url, api_key=expired, max_retries=0).messages.create(
            model="mock-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert refused_a.value.body["type"] == "error" and refused_a.value.body["error"]["type"] == "authentication_error"
    r = httpx.post(env.gw.url + "/v1beta/models/mock-model:generateContent", headers={"x-goog-api-key": expired},
                   json={"contents": [{"parts": [{"text": "hi"}]}]}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    # an HMAC token made with the public key as its secret (algorithm confusion) is refused
    hs = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0ZWFtIjoieCJ9.c2lnbmF0dXJl"
    with pytest.raises(openai.AuthenticationError):
        ask(env.gw, hs, "mock-model")


def test_virtual_keys_and_the_master_key_still_work(env):
    r = httpx.post(env.gw.url + "/key/generate", headers=ADMIN, json={}, timeout=10)
    assert ask(env.gw, r.json()["key"], "mock-model").choices
    assert ask(env.gw, MASTER_KEY, "mock-model").choices
    with pytest.raises(openai.AuthenticationError):
        ask(env.gw, "sk-not-a-key", "mock-model")


def test_models_list_follows_the_team(env):
    team = new_team(env.gw, models=["mock-model"])
    names = [m.id for m in oai(env.gw, env.token(team=team)).models.list()]
    assert names == ["mock-model"]


# ------------------------------------------------------------------------------------ keys from the provider


@pytest.fixture
def lone(mocks, tmp_path):
    """Its own provider and gateway (embedded): public_key_ttl 3 s, an unknown kid refetches at most every 1 s."""
    provider = oidc_provider.start()
    gw = start_gateway(jwt_config(mocks, jwtauth={"public_key_ttl": 3, "jwks_refetch_seconds": 1}), tmp_path,
                       {"JWT_PUBLIC_KEY_URL": provider.jwks_url, "JWT_AUDIENCE": AUDIENCE})
    team = new_team(gw)
    yield provider, gw, team
    gw.process.terminate()
    gw.process.wait(10)
    provider.stop()


def test_key_rotation(lone):
    provider, gw, team = lone
    old = provider.current
    assert ask(gw, provider.token(aud=AUDIENCE, team=team, sub="a"), "mock-model").choices
    hits = provider.jwks_hits
    new = provider.rotate()  # the provider withdraws the old key and signs with a new one
    # the cached key set is trusted for public_key_ttl: a new token of the old key still passes, no refetch
    assert ask(gw, provider.token(aud=AUDIENCE, team=team, sub="b", kid=old), "mock-model").choices
    assert provider.jwks_hits == hits
    # a token of the new key: its kid is unknown, the keys are fetched again, it passes
    assert ask(gw, provider.token(aud=AUDIENCE, team=team, sub="c", kid=new), "mock-model").choices
    assert provider.jwks_hits == hits + 1
    # the refetched set no longer has the old key
    with pytest.raises(openai.AuthenticationError):
        ask(gw, provider.token(aud=AUDIENCE, team=team, sub="d", kid=old), "mock-model")
    # and the ttl makes the set refresh by itself
    time.sleep(3.2)
    assert ask(gw, provider.token(aud=AUDIENCE, team=team, sub="e", kid=new), "mock-model").choices
    assert provider.jwks_hits == hits + 2


def test_unknown_kids_cannot_hammer_the_provider(lone):
    provider, gw, team = lone
    assert ask(gw, provider.token(aud=AUDIENCE, team=team), "mock-model").choices
    hits = provider.jwks_hits
    outsider = oidc_provider.new_key()
    started = time.monotonic()
    for i in range(20):
        made_up = oidc_provider.SigningKey(f"made-up-{i}", outsider.alg, outsider.private)
        with pytest.raises(openai.AuthenticationError):
            ask(gw, provider.sign({"aud": AUDIENCE, "team": team, "exp": int(time.time()) + 60}, key=made_up),
                "mock-model")
    elapsed = time.monotonic() - started
    # at most one refetch a second (jwks_refetch_seconds), however many made-up kids
    assert provider.jwks_hits - hits <= 1 + int(elapsed), (provider.jwks_hits - hits, elapsed)


def test_cached_keys_serve_while_the_provider_is_down(lone):
    provider, gw, team = lone
    assert ask(gw, provider.token(aud=AUDIENCE, team=team, sub="s-1"), "mock-model").choices
    provider.down = True
    time.sleep(3.2)  # public_key_ttl: the set is due for a refetch, which fails
    hits = provider.jwks_hits
    assert ask(gw, provider.token(aud=AUDIENCE, team=team, sub="s-2"), "mock-model").choices
    assert ask(gw, provider.token(aud=AUDIENCE, team=team, sub="s-3"), "mock-model").choices
    assert provider.jwks_hits == hits + 1  # one failed attempt, then the back-off: the known keys serve


def test_provider_down_is_503_then_recovers(mocks, tmp_path):
    provider = oidc_provider.start()
    provider.down = True
    gw = start_gateway(jwt_config(mocks, jwtauth={"jwks_refetch_seconds": 0.5}), tmp_path,
                       {"JWT_PUBLIC_KEY_URL": provider.jwks_url, "JWT_AUDIENCE": AUDIENCE})
    try:
        team = new_team(gw)
        token = provider.token(aud=AUDIENCE, team=team)
        r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                       json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "jwks_unavailable", r.text
        assert ask(gw, MASTER_KEY, "mock-model").choices  # everything else keeps working
        hits = provider.jwks_hits
        r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                       json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert r.status_code == 503 and provider.jwks_hits == hits  # backing off: the provider is not asked again
        provider.down = False
        time.sleep(1.1)  # the back-off after a failed fetch: max(jwks_refetch_seconds, 1 s)
        assert ask(gw, token, "mock-model").choices  # the next request fetches the keys
    finally:
        gw.process.terminate()
        gw.process.wait(10)
        provider.stop()
    # a JWKS URL nobody listens on: the same clear 503, and the log names the URL, not a traceback
    closed = tmp_path / "closed"
    closed.mkdir()
    gw = start_gateway(jwt_config(mocks), closed,
                       {"JWT_PUBLIC_KEY_URL": f"http://127.0.0.1:{free_port()}/jwks", "JWT_AUDIENCE": AUDIENCE})
    try:
        r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                       json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "jwks_unavailable", r.text
        assert "Traceback" not in gw.log()
    finally:
        gw.process.terminate()
        gw.process.wait(10)


def test_config_errors_are_clear(tmp_path):
    from lockgate import config

    with pytest.raises(config.ConfigError, match="JWT_PUBLIC_KEY_URL"):
        config.from_dict({"general_settings": {"master_key": "sk-x", "enable_jwt_auth": True}})
    import os

    os.environ["JWT_PUBLIC_KEY_URL"] = "http://127.0.0.1:1/jwks"
    try:
        with pytest.raises(config.ConfigError, match="master_key"):
            config.from_dict({"general_settings": {"enable_jwt_auth": True}})
        settings = config.from_dict({"general_settings": {"master_key": "sk-x", "enable_jwt_auth": True,
                                                          "litellm_jwtauth": {"made_up_field": 1}}})
        assert settings.jwt_auth is not None and settings.jwt_auth.admin_jwt_scope == "litellm_proxy_admin"
        assert any("litellm_jwtauth.made_up_field" in w for w in settings.warnings)
    finally:
        del os.environ["JWT_PUBLIC_KEY_URL"]


def test_team_created_later_is_picked_up_at_once(env):
    team_id = "later-" + uuid.uuid4().hex[:8]
    token = env.token(team=team_id)
    with pytest.raises(openai.PermissionDeniedError):
        ask(env.gw, token, "mock-model")  # cached as unknown...
    r = httpx.post(env.gw.url + "/team/new", headers=ADMIN, json={"team_id": team_id}, timeout=10)
    assert r.status_code == 200, r.text
    assert ask(env.gw, token, "mock-model").choices  # ...until the management change drops it


def test_claim_mappings_and_upserts(mocks, tmp_path):
    provider = oidc_provider.start()
    gw = start_gateway(jwt_config(mocks, jwtauth={
        "team_id_jwt_field": None, "team_ids_jwt_field": "groups", "team_id_upsert": True,
        "user_allowed_email_domain": "example.com", "roles_jwt_field": "realm_access.roles",
        "role_mappings": [{"role": "lg-viewer", "internal_role": "proxy_admin_viewer"}],
        "team_allowed_routes": ["llm_api_routes"],
    }), tmp_path, {"JWT_PUBLIC_KEY_URL": provider.jwks_url, "JWT_AUDIENCE": AUDIENCE})
    try:
        existing = new_team(gw)
        tok = provider.token(aud=AUDIENCE, sub="m-1", email="m1@example.com", groups=["missing-x", existing])
        assert ask(gw, tok, "mock-model").choices
        rows = wait_rows(gw, team_id=existing)
        assert rows and rows[0]["user_id"] == "m-1"  # the first of the groups that exists
        # the Anthropic door: llm_api_routes allows it
        reply = anthropic.Anthropic(base_url=gw.url, api_key=tok, max_retries=0).messages.create(
            model="mock-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert reply.content
        # team_id_upsert: a team nobody created yet is created
        fresh = "fresh-" + uuid.uuid4().hex[:6]
        assert ask(gw, provider.token(aud=AUDIENCE, sub="m-2", email="m2@example.com", groups=[fresh]),
                   "mock-model").choices
        assert httpx.get(gw.url + "/team/info", headers=ADMIN, params={"team_id": fresh}, timeout=10).status_code == 200
        # another email domain is refused
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ask(gw, provider.token(aud=AUDIENCE, sub="m-3", email="m3@elsewhere.org", groups=[existing]), "mock-model")
        assert refused.value.body["code"] == "email_domain_not_allowed"
        # a nested role claim mapped to a role: the user is created with it and reads as a viewer
        viewer = provider.token(aud=AUDIENCE, sub="v-1", email="v1@example.com",
                                realm_access={"roles": ["offline_access", "lg-viewer"]})
        r = httpx.get(gw.url + "/user/info", headers={"Authorization": f"Bearer {viewer}"},
                      params={"user_id": "m-1"}, timeout=10)
        assert r.status_code == 200, r.text  # proxy_admin_viewer reads every user
        assert r.json()["user_info"]["user_id"] == "m-1"
        info = httpx.get(gw.url + "/user/info", headers=ADMIN, params={"user_id": "v-1"}, timeout=10).json()
        assert info["user_info"]["user_role"] == "proxy_admin_viewer"
        r = httpx.post(gw.url + "/key/generate", headers={"Authorization": f"Bearer {viewer}"}, json={}, timeout=10)
        assert r.status_code == 403  # a viewer creates nothing
    finally:
        gw.process.terminate()
        gw.process.wait(10)
        provider.stop()


def test_several_jwks_urls(mocks, tmp_path):
    """JWT_PUBLIC_KEY_URL comma-separated: the keys of every URL that answers are trusted."""
    first, second = oidc_provider.start(), oidc_provider.start(alg="ES256")
    gw = start_gateway(jwt_config(mocks), tmp_path,
                       {"JWT_PUBLIC_KEY_URL": f"{first.jwks_url}, {second.jwks_url}", "JWT_AUDIENCE": AUDIENCE})
    try:
        team = new_team(gw)
        assert ask(gw, first.token(aud=AUDIENCE, team=team), "mock-model").choices
        assert ask(gw, second.token(aud=AUDIENCE, team=team), "mock-model").choices  # an ES256 key
    finally:
        gw.process.terminate()
        gw.process.wait(10)
        first.stop()
        second.stop()


def test_blocking_the_team_blocks_its_tokens(env):
    team = new_team(env.gw)
    token = env.token(team=team)
    assert ask(env.b, token, "mock-model").choices  # cached on b
    r = httpx.post(env.gw.url + "/team/update", headers=ADMIN, json={"team_id": team, "blocked": True}, timeout=10)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 1.0  # shared mode: the change reaches the other instance through Redis
    while True:
        try:
            ask(env.b, token, "mock-model")  # the same token, its principal dropped by the change
        except openai.PermissionDeniedError as refused:
            assert refused.body["code"] == "team_blocked"
            break
        assert time.monotonic() < deadline, "the block did not reach the other instance within 1 s"
        time.sleep(0.05)
