"""Defects found in review (issue 11, section 4), each through real gateways, PostgreSQL and Redis.

The gateway-level tests run on the embedded default (SQLite + in-process counters, one gateway) and on
PostgreSQL + Redis (two gateways sharing them: the change is made on one, checked on the other).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import MASTER_KEY, gateway_config, start_gateway

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICE = 1e-3  # USD per token of the priced mock deployment


def _config(mocks, general: dict, governance: dict, router: dict | None = None) -> dict:
    cfg = gateway_config(mocks)
    cfg["model_list"].append(
        {"model_name": "priced-mock", "litellm_params": {"model": "mock/priced", "mock_response": "ok then"},
         "model_info": {"input_cost_per_token": PRICE, "output_cost_per_token": PRICE}})
    cfg["general_settings"].update(general)
    cfg["router_settings"].update(router or {})
    cfg["lockgate_settings"] = {"governance": {"budget_reset_interval": 1, **governance}}
    return cfg


async def _pg(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class Backend:
    """The embedded default, or PostgreSQL + Redis with a fresh database and key prefix."""

    def __init__(self, name: str, mocks, tmp: Path, router: dict | None = None, governance: dict | None = None,
                 ) -> None:
        self.name, self.mocks, self.tmp = name, mocks, tmp
        self.general: dict = {}
        self.governance: dict = dict(governance or {})
        self.router = router
        self.db: str | None = None
        self.prefix = f"lockgate-test-{uuid.uuid4().hex[:10]}:"
        self.gateways: list = []
        if name == "pg_redis":
            self.db = "lockgate_defects_" + uuid.uuid4().hex[:10]
            asyncio.run(_pg(f'CREATE DATABASE "{self.db}"'))
            self.general = {"database_url": f"postgresql://postgres@127.0.0.1:5432/{self.db}", "redis_url": REDIS_URL}
            self.governance["redis_key_prefix"] = self.prefix

    def start(self, label: str):
        path = self.tmp / label
        path.mkdir(exist_ok=True)
        gw = start_gateway(_config(self.mocks, self.general, self.governance, self.router), path)
        self.gateways.append(gw)
        return gw

    def close(self) -> None:
        for gw in self.gateways:
            if gw.process.poll() is None:
                gw.process.terminate()
                gw.process.wait(10)
        if self.db:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=self.prefix + "*"))
        if keys:
            r.delete(*keys)
        r.close()


@pytest.fixture(scope="module", params=["embedded", "pg_redis"])
def env(request, mocks, tmp_path_factory):
    backend = Backend(request.param, mocks, tmp_path_factory.mktemp(f"defects-{request.param}"))
    try:
        backend.a = backend.start("a")
        backend.b = backend.start("b") if request.param == "pg_redis" else backend.a
        yield backend
    finally:
        backend.close()


def admin(gw, path: str, **body) -> dict:
    r = httpx.post(gw.url + path, headers=ADMIN, json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def gen_key(gw, **fields) -> str:
    return admin(gw, "/key/generate", **fields)["key"]


def chat(gw, key: str, model: str = "priced-mock", **body) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": "hello"}], **body}
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=payload,
                      timeout=30)


def eventually(check, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


# ------------------------------------------------------------------ 1. spend reset resets the running counter


def _exhaust(env, key: str, **body) -> None:
    assert chat(env.a, key, **body).status_code == 200  # costs more than the whole budget
    refused = eventually(lambda: chat(env.b, key, **body).status_code == 429)
    assert refused, "the budget should be exceeded after one request"


@pytest.mark.parametrize("level", ["key", "key-1d", "team", "user", "organization", "customer"])
def test_an_update_that_resets_spend_resets_the_running_counter(env, level):
    budget: dict = {"max_budget": 1e-6}
    body: dict = {}
    if level == "key-1d":  # a budget period: the counter is named after it
        level, budget["budget_duration"] = "key", "1d"
    if level == "key":
        key = gen_key(env.a, **budget)
    elif level == "customer":
        end_user = "customer-" + uuid.uuid4().hex[:8]
        admin(env.a, "/customer/new", user_id=end_user, **budget)
        key, body = MASTER_KEY, {"user": end_user}
    else:
        ident = admin(env.a, f"/{level}/new", **budget)[f"{level}_id"]
        key = gen_key(env.a, **{f"{level}_id": ident})
    _exhaust(env, key, **body)

    if level == "key":
        admin(env.a, "/key/update", key=key, spend=0)
    elif level == "customer":
        admin(env.a, "/customer/update", user_id=body["user"], spend=0)
    else:
        admin(env.a, f"/{level}/update", **{f"{level}_id": ident, "spend": 0})
    # the other instance (pg_redis) answers at once: the counter is shared, not reloaded after a TTL
    answer = chat(env.b, key, **body)
    assert answer.status_code == 200, answer.text
    # and the budget still holds from there on
    assert eventually(lambda: chat(env.b, key, **body).status_code == 429)


# ------------------------------------------------------------------ 2. route groups cover every route served


@pytest.fixture(scope="module")
def embedded(mocks, tmp_path_factory):
    backend = Backend("embedded", mocks, tmp_path_factory.mktemp("defects-routes"))
    try:
        backend.a = backend.start("a")
        yield backend
    finally:
        backend.close()


MESSAGES = [{"role": "user", "content": "hello"}]
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
# (name, path, body): one request per route the gateway serves, with and without /v1
CALLS = [
    ("chat", "/v1/chat/completions", {"model": "openai-model", "messages": MESSAGES}),
    ("chat", "/chat/completions", {"model": "openai-model", "messages": MESSAGES}),
    ("completions", "/v1/completions", {"model": "claude-model", "prompt": "hello", "max_tokens": 5}),
    ("completions", "/completions", {"model": "claude-model", "prompt": "hello", "max_tokens": 5}),
    ("responses", "/v1/responses", {"model": "claude-model", "input": "hello"}),
    ("responses", "/responses", {"model": "claude-model", "input": "hello"}),
    ("embeddings", "/v1/embeddings", {"model": "openai-embed", "input": "hello"}),
    ("embeddings", "/embeddings", {"model": "openai-embed", "input": "hello"}),
    ("messages", "/v1/messages", {"model": "claude-model", "max_tokens": 10, "messages": MESSAGES}),
    ("messages", "/messages", {"model": "claude-model", "max_tokens": 10, "messages": MESSAGES}),
    ("count_tokens", "/v1/messages/count_tokens", {"model": "claude-model", "messages": MESSAGES}),
    ("generate", "/v1beta/models/gemini-model:generateContent", GEMINI_BODY),
    ("generate", "/v1/models/gemini-model:generateContent", GEMINI_BODY),
    ("stream", "/v1beta/models/gemini-model:streamGenerateContent?alt=sse", GEMINI_BODY),
    ("gemini_count_tokens", "/v1beta/models/gemini-model:countTokens", GEMINI_BODY),
]


def call(gw, key: str, path: str, body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    return httpx.post(gw.url + path, headers=headers, json=body, timeout=30)


@pytest.mark.parametrize("allowed, served", [
    (["llm_api_routes"], {c[0] for c in CALLS}),
    (["LiteLLMRoutes.llm_api_routes"], {c[0] for c in CALLS}),
    (["openai_routes"], {"chat", "completions", "responses", "embeddings"}),
    (["anthropic_routes"], {"messages", "count_tokens"}),
    (["google_routes"], {"generate", "stream", "gemini_count_tokens"}),
    (["/v1/responses"], {"responses"}),
    (["/completions", "/embeddings"], {"completions", "embeddings"}),
    (["/v1beta/models/{model}:generateContent"], {"generate"}),
    (["/v1beta/models/gemini-model:streamGenerateContent"], {"stream"}),
    (["/v1beta/models/*"], {"generate", "stream", "gemini_count_tokens"}),
    (["management_routes"], set()),
])
def test_allowed_routes_cover_every_route_served(embedded, allowed, served):
    key = gen_key(embedded.a, allowed_routes=allowed)
    for name, path, body in CALLS:
        r = call(embedded.a, key, path, body)
        if name in served:
            assert r.status_code == 200, (allowed, path, r.text)
        else:
            assert r.status_code == 403, (allowed, path, r.text)
            error = r.json()["error"]
            message = error["message"] if isinstance(error, dict) else r.json()["error"]["message"]
            assert "not allowed to call" in message, (path, r.text)


# ------------------------------------------------------------------ 3. GET /health is for admin roles only


def test_health_is_for_admin_roles_only(embedded):
    gw = embedded.a

    def health(key: str | None, path: str = "/health") -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(gw.url + path, headers=headers, timeout=30)

    def user_key(role: str | None, **key_fields) -> str:
        fields = {"user_role": role} if role else {}
        user = admin(gw, "/user/new", **fields)["user_id"]
        return gen_key(gw, user_id=user, **key_fields)

    plain = gen_key(gw)  # a key without a user
    for key in (plain, user_key("internal_user"), user_key("internal_user_viewer")):
        refused = health(key)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "permission_error"
        assert "proxy_admin" in refused.json()["error"]["message"]
    assert health(None).status_code == 401

    answered = health(MASTER_KEY)
    assert answered.status_code == 200 and "healthy_endpoints" in answered.json()
    for role in ("proxy_admin", "proxy_admin_viewer"):
        r = health(user_key(role))
        assert r.status_code == 200 and "healthy_endpoints" in r.json(), r.text
    blocked = user_key("proxy_admin", blocked=True)
    assert health(blocked).status_code == 401

    # liveliness and readiness stay open, with or without a key
    for path in ("/health/liveliness", "/health/liveness", "/health/readiness"):
        assert health(None, path).status_code == 200
        assert health(plain, path).status_code == 200


# ------------------------------------------------------------------ 4. the key cache: misses never evict hits


class _Loader:
    """Valid idents start with "good"; everything else is not found."""

    def __init__(self) -> None:
        self.calls = 0
        self.deleted: set[str] = set()

    async def __call__(self, ident: str):
        self.calls += 1
        return None if not ident.startswith("good") or ident in self.deleted else ("principal", ident)


async def test_a_flood_of_random_keys_evicts_no_valid_key():
    from lockgate.governance.cache import TTLCache

    loader = _Loader()
    cache = TTLCache(loader, ttl=300, max_entries=100, max_misses=50)
    valid = [f"good{i}" for i in range(20)]
    for ident in valid:
        assert await cache.get(ident) == ("principal", ident)
    for _ in range(5_000):  # random keys: every one a miss
        assert await cache.get("sk-" + uuid.uuid4().hex) is None
    calls = loader.calls
    for ident in valid:  # every valid key is still cached: no lookup
        assert await cache.get(ident) == ("principal", ident)
    assert loader.calls == calls
    assert len(cache) <= 100 + 50  # bounded


async def test_each_table_evicts_its_least_recently_used_entry():
    from lockgate.governance.cache import TTLCache

    loader = _Loader()
    cache = TTLCache(loader, ttl=300, max_entries=3, max_misses=2)
    for ident in ("good-a", "good-b", "good-c", "bad-1", "bad-2"):
        await cache.get(ident)
    cache.invalidate("good-a")  # reloaded: now the most recently used
    await cache.get("good-a")
    await cache.get("good-d")  # over the bound: good-b, the least recently loaded, goes
    await cache.get("bad-3")  # a miss pushes out bad-1 only
    assert list(cache._entries) == ["good-c", "good-a", "good-d"]
    assert list(cache._misses) == ["bad-2", "bad-3"]


async def test_a_key_that_disappears_is_not_answered_from_the_found_table(monkeypatch):
    from lockgate.governance import cache as cache_module
    from lockgate.governance.cache import TTLCache

    now = [1000.0]
    monkeypatch.setattr(cache_module, "monotonic", lambda: now[0])
    loader = _Loader()
    cache = TTLCache(loader, ttl=5)
    assert await cache.get("good-k") == ("principal", "good-k")
    loader.deleted.add("good-k")  # deleted in storage
    now[0] += 6  # stale: answered once while the refresh runs
    assert await cache.get("good-k") == ("principal", "good-k")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await cache.get("good-k") is None and "good-k" not in cache._entries and "good-k" in cache._misses
    assert cache.peek("good-k") is None


# ------------------------------------------------------------------ 5. the Redis listeners survive a dropped connection


def _deployment_id(gw, model_name: str) -> str:
    from lockgate import config

    return next(d.id for d in config.load(gw.config_path).deployments if d.model_name == model_name)


def _cooling(gw, dep_id: str) -> bool:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    return f'lockgate_deployment_cooldown{{deployment="{dep_id}"}} 1.0' in text


def _local_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (from /proc: no name or configuration involved)."""
    import os

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _listener_ids(r, gateways) -> list[str]:
    """The Redis pub/sub connections of these gateway processes (nobody else's)."""
    ports: set[int] = set()
    for gw in gateways:
        ports |= _local_ports(gw.process.pid)
    return [c["id"] for c in r.client_list(_type="pubsub") if int(c["addr"].rsplit(":", 1)[1]) in ports]


def _kill_listeners(r, gateways, expected: int) -> None:
    """Kill the gateways' ``expected`` listener connections, and wait until as many new ones replace them."""
    # the listeners may be between connections (a heartbeat replaced one on a loaded machine): wait for them
    assert eventually(lambda: len(_listener_ids(r, gateways)) == expected, timeout=10), _listener_ids(r, gateways)
    killed = set(_listener_ids(r, gateways))
    assert len(killed) == expected, killed
    for client_id in killed:
        r.client_kill_filter(_id=client_id)

    def replaced() -> bool:
        now = set(_listener_ids(r, gateways))
        return len(now) == expected and not now & killed

    assert eventually(replaced, timeout=10), "the listeners did not reconnect"


@pytest.fixture(scope="module")
def shared(mocks, tmp_path_factory):
    """Two gateways on PostgreSQL + Redis; cached keys live 300 s (only pub/sub can drop them);
    a failing deployment cools down at its first failure."""
    backend = Backend("pg_redis", mocks, tmp_path_factory.mktemp("defects-listeners"),
                      router={"disable_cooldowns": False, "allowed_fails": 0, "cooldown_time": 60, "num_retries": 0},
                      governance={"key_cache_ttl": 300})
    try:
        backend.a = backend.start("a")
        backend.b = backend.start("b")
        yield backend
    finally:
        backend.close()


def test_invalidations_and_cooldowns_arrive_after_the_listener_connection_is_killed(shared):
    import redis

    a, b = shared.a, shared.b
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        gateways = [a, b]
        assert eventually(lambda: len(_listener_ids(r, gateways)) == 4, timeout=10)  # 2 gateways x 2 listeners
        for _ in range(2):  # twice: the reconnected listener survives a second drop as well
            _kill_listeners(r, gateways, 4)

        key = gen_key(a)
        assert chat(a, key).status_code == 200  # cached on a for 300 s
        admin(b, "/key/block", key=key)  # b publishes the invalidation
        assert eventually(lambda: chat(a, key).status_code == 401), "the invalidation did not reach a"

        dep_id = _deployment_id(a, "wrong-key-model")  # the provider answers 401: an immediate cooldown
        assert not _cooling(a, dep_id)
        assert chat(b, MASTER_KEY, "wrong-key-model").status_code == 401  # b cools it down and publishes it
        assert _cooling(b, dep_id)
        assert eventually(lambda: _cooling(a, dep_id)), "the cooldown did not reach a"
        # the listeners' connections carry names an operator can find in CLIENT LIST
        named = {c["name"] for c in r.client_list(_type="pubsub") if c["id"] in _listener_ids(r, gateways)}
        assert named == {shared.prefix + "invalidate-listener", shared.prefix + "routing:listener"}
    finally:
        r.close()


def test_what_was_published_while_disconnected_is_resynced_after_the_reconnect(shared):
    import redis

    a = shared.a
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        assert eventually(lambda: len(_listener_ids(r, [a])) == 2, timeout=10)
        # a cooldown written by an instance whose message a missed (no PUBLISH): only a resync sees it
        dep_id = _deployment_id(a, "timeout-model")
        r.set(shared.prefix + "routing:cooldown:" + dep_id, repr(time.time() + 60), px=60_000)
        # a key blocked in the database without an invalidation message: cached on a meanwhile
        key = gen_key(a)
        assert chat(a, key).status_code == 200
        from lockgate.governance.enforcement import hash_key

        asyncio.run(_pg_in(shared.db, "UPDATE keys SET blocked = true WHERE token_hash = $1", hash_key(key)))
        time.sleep(0.5)
        assert not _cooling(a, dep_id) and chat(a, key).status_code == 200  # nothing told a yet

        _kill_listeners(r, [a], 2)
        assert eventually(lambda: _cooling(a, dep_id), timeout=10), "cooldowns were not reloaded after the reconnect"
        assert eventually(lambda: chat(a, key).status_code == 401), "cached keys were not dropped after the reconnect"
    finally:
        r.close()


async def _pg_in(db: str, statement: str, *args) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}")
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


# ------------------------------------------------------------------ 6. secrets in reprs, Redis URLs, credential caches

SECRETS = {"provider": "sk-provider-secret-0123456789", "master": "sk-master-secret-0123456789",
           "azure": "eyJ-azure-ad-token-secret", "aws": "aws-secret-access-key-value", "redis": "redis-pass-secret",
           "db": "db-pass-secret"}


def test_settings_and_deployment_reprs_print_no_secret():
    from lockgate import config

    settings = config.from_dict({
        "model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": SECRETS["provider"]}},
            {"model_name": "az", "litellm_params": {"model": "azure/gpt-4o", "api_base": "https://x.example",
                                                    "azure_ad_token": SECRETS["azure"]}},
            {"model_name": "br", "litellm_params": {"model": "bedrock/amazon.nova-pro-v1:0",
                                                    "aws_access_key_id": "AKIAEXAMPLE",
                                                    "aws_secret_access_key": SECRETS["aws"]}},
        ],
        "general_settings": {"master_key": SECRETS["master"],
                             "database_url": f"postgresql://u:{SECRETS['db']}@127.0.0.1/x"},
        "router_settings": {"redis_host": "127.0.0.1", "redis_password": SECRETS["redis"]},
    })
    text = repr(settings) + str(settings) + "".join(repr(d) for d in settings.deployments)
    for secret in SECRETS.values():
        assert secret not in text
    assert "gpt-4o" in text and "model_name='az'" in text  # still a useful repr
    assert settings.master_key == SECRETS["master"]  # the values themselves are intact


def test_a_redis_password_with_special_characters_is_url_encoded():
    import redis

    from lockgate import config

    password = "p@ss:w/rd#?%"
    url = config.redis_url({"redis_host": "127.0.0.1", "redis_port": 6379, "redis_password": password}, {})
    kwargs = redis.connection.parse_url(url)
    assert (kwargs["password"], kwargs["host"], kwargs["port"]) == (password, "127.0.0.1", 6379)


def test_a_redis_acl_user_with_a_special_character_password_connects():
    """Against the real Redis: an ACL user of its own (the server's own password is left alone)."""
    import redis

    from lockgate import config

    name, password = "lockgate-test-" + uuid.uuid4().hex[:10], "p@ss:w/rd#" + uuid.uuid4().hex[:6]
    admin_client = redis.Redis.from_url(REDIS_URL)
    admin_client.acl_setuser(name, enabled=True, passwords=["+" + password], commands=["+ping"], keys=[])
    try:
        url = config.redis_url({}, {"redis_host": "127.0.0.1", "redis_port": 6379, "redis_username": name,
                                    "redis_password": password})
        client = redis.Redis.from_url(url)
        try:
            assert client.ping() is True
        finally:
            client.close()
    finally:
        admin_client.acl_deluser(name)
        admin_client.close()


def _bedrock_settings(access_key: str, region: str):
    from lockgate import config

    return config.from_dict({"model_list": [{"model_name": "nova", "litellm_params": {
        "model": "bedrock/amazon.nova-pro-v1:0", "aws_access_key_id": access_key,
        "aws_secret_access_key": "secret-" + access_key, "aws_region_name": region}}]})


async def test_two_gateways_in_one_process_never_share_credentials():
    from lockgate.gateway import Gateway

    one, two = Gateway(_bedrock_settings("AKIAONE", "eu-west-1")), Gateway(_bedrock_settings("AKIATWO", "us-east-2"))
    try:
        signed = []
        for gw in (one, two):
            dep = gw.settings.deployments[0]  # same model name, model and position: the same deployment id
            provider = gw.providers["bedrock"].for_deployment(dep)
            url = provider.chat_url(dep, False)
            signed.append((url, await provider.sign(dep, url, {"content-type": "application/json"}, b"{}")))
        assert one.settings.deployments[0].id == two.settings.deployments[0].id
        (url_one, h_one), (url_two, h_two) = signed
        assert "Credential=AKIAONE/" in h_one["Authorization"] and "bedrock-runtime.eu-west-1." in url_one
        assert "Credential=AKIATWO/" in h_two["Authorization"] and "bedrock-runtime.us-east-2." in url_two

        # each gateway owns its caches: Vertex's token cache and Bedrock's credentials, shared only by the
        # variants of one provider inside one gateway
        for name in ("vertex_ai", "bedrock"):
            a, b = one.providers[name], two.providers[name]
            assert a.auth is not b.auth
        vertex = one.providers["vertex_ai"]
        assert vertex.claude is not None and vertex.claude.auth is vertex.auth
        bedrock = one.providers["bedrock"]
        assert bedrock.invoke is not None and bedrock.invoke.auth is bedrock.auth
    finally:
        await one.upstream.close()
        await two.upstream.close()


class FreezingProxy:
    """A TCP proxy to the real Redis; ``freeze()`` silently drops every byte of the connections open at that
    moment (sockets stay open: a half-open connection as after a network partition); later ones pass."""

    def __init__(self) -> None:
        self.frozen: set[int] = set()
        self.open: set[int] = set()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._next = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self.frozen |= self.open

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next += 1
        ident = self._next
        self.open.add(ident)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if ident not in self.frozen:
                    dst.write(data)
                    await dst.drain()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    async def close(self) -> None:
        for w in self._writers:
            w.close()
        if self.server is not None:
            self.server.close()


async def test_a_silent_listener_connection_is_noticed_and_replaced():
    import redis.asyncio as aioredis

    from lockgate.state import pubsub

    async def until(check, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    proxy = FreezingProxy()
    await proxy.start()
    channel = f"lockgate-test-{uuid.uuid4().hex[:10]}:events"
    base = aioredis.from_url(f"redis://127.0.0.1:{proxy.port}/0")
    listener = pubsub.listener_client(base, "lockgate-test-silent-listener")
    publisher = aioredis.from_url(REDIS_URL)
    got: list[bytes] = []
    resyncs: list[float] = []

    async def resync() -> None:
        resyncs.append(time.monotonic())

    task = asyncio.create_task(pubsub.listen(listener, channel, got.append, resync, "test", heartbeat=0.2))
    try:
        assert await until(lambda: len(resyncs) == 1)
        await publisher.publish(channel, b"before")
        assert await until(lambda: got == [b"before"])
        proxy.freeze()  # no close, no reset: only silence
        frozen_at = time.monotonic()
        assert await until(lambda: len(resyncs) == 2), "the silent connection was never replaced"
        assert resyncs[1] - frozen_at < 2.0  # about three heartbeats
        await publisher.publish(channel, b"after")
        assert await until(lambda: got == [b"before", b"after"])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await listener.aclose()
        await base.aclose()
        await publisher.aclose()
        await proxy.close()


def test_a_gateway_uses_a_redis_acl_user_with_a_special_character_password(mocks, tmp_path):
    """The whole gateway (counters, invalidation and cooldown listeners) on an ACL user of its own, given as
    redis_host / redis_port / redis_username / redis_password, limited to the test's key prefix."""
    import redis

    prefix = f"lockgate-test-{uuid.uuid4().hex[:10]}:"
    name, password = "lockgate-test-" + uuid.uuid4().hex[:10], "p@ss:w/rd#" + uuid.uuid4().hex[:6]
    admin_client = redis.Redis.from_url(REDIS_URL)
    admin_client.execute_command("ACL", "SETUSER", name, "on", ">" + password, f"~{prefix}*", f"&{prefix}*",
                                 "+@all")
    gw = None
    try:
        cfg = _config(mocks, {}, {"redis_key_prefix": prefix},
                      {"redis_host": "127.0.0.1", "redis_port": 6379, "redis_username": name,
                       "redis_password": password})
        gw = start_gateway(cfg, tmp_path)
        key = gen_key(gw, rpm_limit=2)
        if time.time() % 60 > 50:  # keep the three requests inside one fixed 60 s window
            time.sleep(60 - time.time() % 60 + 0.2)
        assert [chat(gw, key).status_code for _ in range(3)] == [200, 200, 429]  # counters in Redis
        assert admin_client.keys(prefix + "k:*")  # written as that user, under the prefix
        log = gw.log()
        assert password not in log and "channel lost" not in log
    finally:
        if gw is not None:
            gw.process.terminate()
            gw.process.wait(10)
        admin_client.acl_deluser(name)
        keys = list(admin_client.scan_iter(match=prefix + "*"))
        if keys:
            admin_client.delete(*keys)
        admin_client.close()
