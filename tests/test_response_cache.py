"""The exact response cache (litellm_settings.cache), end to end through `lockgate serve`, with the
official SDKs: every front door stream and non-stream, the key's parameters, tenant isolation, the
per-request controls, what is never stored, accounting of hits, embeddings per item, purge."""

from __future__ import annotations

import time
import uuid

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests.conftest import MASTER_KEY, gateway_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module", params=["local", "redis"])
def cached(request, mocks, tmp_path_factory):
    """One gateway with the cache in process, one with it in Redis (the shared Redis, a namespace of its own)."""
    config = gateway_config(mocks)
    params: dict = {"type": request.param, "ttl": 600}
    namespace = "test-" + uuid.uuid4().hex[:10]
    if request.param == "redis":
        params.update(host="127.0.0.1", port=6379, namespace=namespace)
    config["litellm_settings"] = {"drop_params": True, "cache": True, "cache_params": params}
    gw = start_gateway(config, tmp_path_factory.mktemp("cached"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)
    if request.param == "redis":
        import redis

        client = redis.Redis()
        keys = list(client.scan_iter(match=namespace + ":*"))
        if keys:
            client.delete(*keys)


def _upstream(mocks, provider: str, marker: str) -> int:
    """How many requests carrying ``marker`` reached the provider mock."""
    return sum(marker in str(r.body) for r in mocks[provider].recorder.requests)


def _oai(gw, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def _chat(gw, marker: str, key: str = MASTER_KEY, model: str = "openai-model", **extra):
    return _oai(gw, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": marker}], **extra)


@pytest.mark.parametrize(("model", "provider"), [("openai-model", "openai"), ("claude-model", "anthropic"),
                                                 ("gemini-model", "gemini")])
def test_openai_chat_hit_replays_the_answer_without_the_provider(cached, mocks, model, provider):
    marker = "q-" + uuid.uuid4().hex
    first = _chat(cached, marker, model=model)
    second = _chat(cached, marker, model=model)
    assert first.headers["x-lockgate-cache"] == "miss" and second.headers["x-lockgate-cache"] == "hit"
    assert second.headers["x-litellm-cache-key"].startswith("master/") and "age" in second.headers
    assert second.parse().model_dump() == first.parse().model_dump()
    assert _upstream(mocks, provider, marker) == 1


@pytest.mark.parametrize("model", ["openai-model", "claude-model"])
def test_openai_stream_replayed_as_the_same_events(cached, mocks, model):
    marker = "s-" + uuid.uuid4().hex
    client = _oai(cached)
    runs = []
    for _ in range(2):
        with client.chat.completions.with_streaming_response.create(
                model=model, messages=[{"role": "user", "content": marker}], stream=True,
                stream_options={"include_usage": True}) as resp:
            runs.append((resp.headers["x-lockgate-cache"], b"".join(resp.iter_bytes())))
    assert [r[0] for r in runs] == ["miss", "hit"]
    assert runs[0][1] == runs[1][1] and b"[DONE]" in runs[1][1] and b'"usage"' in runs[1][1]
    assert _upstream(mocks, "openai" if model == "openai-model" else "anthropic", marker) == 1
    # the stream and the non-stream of one request are separate entries
    assert _chat(cached, marker, model=model).headers["x-lockgate-cache"] == "miss"


def test_streamed_tool_calls_replay_intact(cached, mocks):
    marker = "TRIGGER_TOOL " + uuid.uuid4().hex
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    client = _oai(cached)
    calls = []
    for _ in range(2):
        stream = client.chat.completions.create(model="openai-model", stream=True, tools=tools,
                                                messages=[{"role": "user", "content": marker}])
        args, finish = "", None
        for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    args += call.function.arguments or ""
                finish = choice.finish_reason or finish
        calls.append((args, finish))
    assert calls[0] == calls[1] and calls[1][1] == "tool_calls" and calls[1][0]
    assert _upstream(mocks, "openai", marker) == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "provider"), [("claude-model", "anthropic"), ("openai-model", "openai")])
def test_anthropic_messages_hit(cached, mocks, model, provider, stream):
    marker = "a-" + uuid.uuid4().hex
    client = anthropic.Anthropic(base_url=cached.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    seen = []
    for _ in range(2):
        if stream:
            with client.messages.with_streaming_response.create(
                    model=model, max_tokens=100, stream=True,
                    messages=[{"role": "user", "content": marker}]) as resp:
                seen.append((resp.headers["x-lockgate-cache"], b"".join(resp.iter_bytes())))
        else:
            raw = client.messages.with_raw_response.create(model=model, max_tokens=100,
                                                           messages=[{"role": "user", "content": marker}])
            seen.append((raw.headers["x-lockgate-cache"], raw.parse().model_dump_json().encode()))
    assert [s[0] for s in seen] == ["miss", "hit"] and seen[0][1] == seen[1][1]
    if stream:
        assert b"message_stop" in seen[1][1]
    assert _upstream(mocks, provider, marker) == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "provider"), [("groq-model", "openai"), ("claude-model", "anthropic")])
def test_responses_api_hit(cached, mocks, model, provider, stream):
    marker = "r-" + uuid.uuid4().hex
    client = _oai(cached)
    seen = []
    for _ in range(2):
        if stream:
            with client.responses.with_streaming_response.create(model=model, input=marker, stream=True) as resp:
                seen.append((resp.headers["x-lockgate-cache"], b"".join(resp.iter_bytes())))
        else:
            raw = client.responses.with_raw_response.create(model=model, input=marker)
            seen.append((raw.headers["x-lockgate-cache"], raw.parse().output_text.encode()))
    assert [s[0] for s in seen] == ["miss", "hit"] and seen[0][1] == seen[1][1]
    assert _upstream(mocks, provider, marker) == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "provider"), [("gemini-model", "gemini"), ("openai-model", "openai")])
def test_gemini_generate_content_hit(cached, mocks, model, provider, stream):
    marker = "g-" + uuid.uuid4().hex
    texts, headers = [], []

    def keep(resp: httpx.Response) -> None:
        headers.append(resp.headers.get("x-lockgate-cache"))

    client = genai.Client(api_key=MASTER_KEY, http_options=types.HttpOptions(
        base_url=cached.url, timeout=20_000, httpx_client=httpx.Client(event_hooks={"response": [keep]})))
    for _ in range(2):
        if stream:
            texts.append("".join(c.text or "" for c in client.models.generate_content_stream(model=model,
                                                                                           contents=marker)))
        else:
            texts.append(client.models.generate_content(model=model, contents=marker).text)
    assert headers == ["miss", "hit"] and texts[0] == texts[1] and texts[0]
    assert _upstream(mocks, provider, marker) == 1


@pytest.mark.parametrize("change", [
    {"temperature": 0.2}, {"seed": 7}, {"max_tokens": 33}, {"n": 2}, {"top_p": 0.5},
    {"response_format": {"type": "json_object"}},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    {"tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    {"presence_penalty": 0.5}, {"stop": ["END"]}, {"logit_bias": {"50256": -100}},
])
def test_every_parameter_that_shapes_the_answer_changes_the_key(cached, mocks, change):
    marker = "p-" + uuid.uuid4().hex
    base = {"tools": change["tools"]} if "tool_choice" in change else {}
    assert _chat(cached, marker, **base).headers["x-lockgate-cache"] == "miss"
    assert _chat(cached, marker, **base).headers["x-lockgate-cache"] == "hit"
    assert _chat(cached, marker, **change).headers["x-lockgate-cache"] == "miss"
    # transport-only fields do not: user, metadata
    assert _chat(cached, marker, **base, user="someone-else",
                 metadata={"trace": "x"}).headers["x-lockgate-cache"] == "hit"


def _team_key(gw, team: str | None, **fields) -> str:
    if team is not None:
        httpx.post(gw.url + "/team/new", headers=ADMIN, json={"team_id": team}, timeout=10).raise_for_status()
    body = {"team_id": team, **fields} if team else fields
    r = httpx.post(gw.url + "/key/generate", headers=ADMIN, json=body, timeout=10)
    r.raise_for_status()
    return r.json()["key"]


def test_tenants_never_see_each_others_answers(cached, mocks):
    team_a, team_b = "ta-" + uuid.uuid4().hex[:8], "tb-" + uuid.uuid4().hex[:8]
    a1, b1 = _team_key(cached, team_a), _team_key(cached, team_b)
    r = httpx.post(cached.url + "/key/generate", headers=ADMIN, json={"team_id": team_a}, timeout=10)
    a2 = r.json()["key"]
    lone1, lone2 = _team_key(cached, None), _team_key(cached, None)
    marker = "t-" + uuid.uuid4().hex
    assert _chat(cached, marker, key=a1).headers["x-lockgate-cache"] == "miss"
    assert _chat(cached, marker, key=a2).headers["x-lockgate-cache"] == "hit"  # same team
    assert _chat(cached, marker, key=b1).headers["x-lockgate-cache"] == "miss"  # another team
    assert _chat(cached, marker, key=lone1).headers["x-lockgate-cache"] == "miss"  # no team: its key
    assert _chat(cached, marker, key=lone2).headers["x-lockgate-cache"] == "miss"
    assert _chat(cached, marker).headers["x-lockgate-cache"] == "miss"  # the master key
    assert _upstream(mocks, "openai", marker) == 5
    # nothing in the body chooses the scope
    assert _chat(cached, marker, key=b1, extra_body={"cache": {"namespace": team_a}},
                 ).headers["x-lockgate-cache"] == "miss"


def test_controls_no_cache_no_store_ttl_s_maxage_and_header(cached, mocks):
    marker = "c-" + uuid.uuid4().hex
    assert _chat(cached, marker, extra_body={"cache": {"no-store": True}}).headers["x-lockgate-cache"] == "miss"
    assert _chat(cached, marker, extra_body={"cache": {"ttl": 1}}).headers["x-lockgate-cache"] == "miss"
    assert _chat(cached, marker).headers["x-lockgate-cache"] == "hit"
    time.sleep(1.3)
    assert _chat(cached, marker).headers["x-lockgate-cache"] == "miss"  # its own ttl ran out; stored again
    assert _chat(cached, marker, extra_body={"cache": {"no-cache": True}}).headers["x-lockgate-cache"] == "bypass"
    assert _chat(cached, marker, extra_headers={"Cache-Control": "no-cache"}).headers["x-lockgate-cache"] == "bypass"
    time.sleep(1.1)
    assert _chat(cached, marker, extra_body={"cache": {"s-maxage": 1}}).headers["x-lockgate-cache"] == "miss"
    assert _chat(cached, marker, extra_body={"cache": {"s-maxage": 60}}).headers["x-lockgate-cache"] == "hit"
    assert _upstream(mocks, "openai", marker) == 6
    other = "c2-" + uuid.uuid4().hex
    assert _chat(cached, other, extra_headers={"Cache-Control": "no-store"}).headers["x-lockgate-cache"] == "miss"
    assert _chat(cached, other).headers["x-lockgate-cache"] == "miss"
    with pytest.raises(openai.BadRequestError):
        _chat(cached, other, extra_body={"cache": {"ttl": "soon"}})


def test_allowed_cache_controls_limit_a_key(cached):
    key = _team_key(cached, None, allowed_cache_controls=["no-cache"])
    marker = "k-" + uuid.uuid4().hex
    assert _chat(cached, marker, key=key, extra_body={"cache": {"no-cache": True}}).headers["x-lockgate-cache"] \
        == "bypass"
    with pytest.raises(openai.PermissionDeniedError) as err:
        _chat(cached, marker, key=key, extra_body={"cache": {"no-store": True}})
    assert "no-store" in str(err.value)
    bad = httpx.post(cached.url + "/key/generate", headers=ADMIN, json={"allowed_cache_controls": ["always"]})
    assert bad.status_code == 400 and "allowed_cache_controls" in bad.text


def test_errors_and_cut_answers_are_never_stored(cached, mocks):
    marker = "TRIGGER_500 " + uuid.uuid4().hex
    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            _chat(cached, marker)
    assert _upstream(mocks, "openai", marker) >= 2
    # a stream the client abandoned after its first event
    cut = "LONG-" + uuid.uuid4().hex
    with httpx.stream("POST", cached.url + "/v1/chat/completions", headers=ADMIN, timeout=10,
                      json={"model": "openai-model", "stream": True,
                            "messages": [{"role": "user", "content": "TRIGGER_LONGSTREAM " + cut}]}) as resp:
        next(resp.iter_bytes())
    time.sleep(0.3)
    with httpx.stream("POST", cached.url + "/v1/chat/completions", headers=ADMIN, timeout=30,
                      json={"model": "openai-model", "stream": True,
                            "messages": [{"role": "user", "content": "TRIGGER_LONGSTREAM " + cut}]}) as resp:
        assert resp.headers["x-lockgate-cache"] == "miss"
        resp.read()


def test_a_hit_costs_nothing_and_its_spend_row_says_what_it_saved(cached):
    key = _team_key(cached, None, max_budget=10, tpm_limit=1_000_000)
    marker = "$-" + uuid.uuid4().hex
    first = _chat(cached, marker, key=key)
    hit = _chat(cached, marker, key=key)
    assert hit.headers["x-lockgate-cache"] == "hit" and hit.headers["x-lockgate-response-cost"] == "0.0"
    cost = float(first.headers["x-lockgate-response-cost"])
    assert cost > 0
    deadline = time.monotonic() + 10
    rows: list = []
    while time.monotonic() < deadline:
        rows = httpx.get(cached.url + "/spend/logs", headers=ADMIN, params={"api_key": key}).json()["data"]
        if len(rows) == 2:
            break
        time.sleep(0.2)
    by_id = {r["request_id"]: r for r in rows}
    row = by_id[hit.headers["x-request-id"]]
    assert row["spend"] == 0 and row["prompt_tokens"] == 0 and row["provider"] == "cache"
    assert row["metadata"]["cache_hit"] is True and row["metadata"]["saved_cost"] == pytest.approx(cost)
    assert row["metadata"]["cache_key"] == hit.headers["x-litellm-cache-key"]
    info = httpx.get(cached.url + "/key/info", headers=ADMIN, params={"key": key}).json()
    assert (info.get("info") or info)["spend"] == pytest.approx(cost)  # the hit added nothing
    metrics = httpx.get(cached.url + "/metrics").text
    assert 'lockgate_cache_requests_total{result="hit"}' in metrics
    assert "lockgate_cache_saved_cost_total" in metrics


def test_embeddings_are_cached_per_item(cached, mocks):
    a, b, c = (f"{n}-{uuid.uuid4().hex}" for n in "abc")
    client = _oai(cached)
    first = client.embeddings.with_raw_response.create(model="openai-embed", input=[a, b])
    assert first.headers["x-lockgate-cache"] == "miss"
    partial = client.embeddings.with_raw_response.create(model="openai-embed", input=[c, a, b])
    assert partial.headers["x-lockgate-cache"] == "partial-hit"
    sent = [r.body["input"] for r in mocks["openai"].recorder.requests if c in str(r.body)]
    assert sent == [[c]]  # only the missing item went upstream
    vectors = {e.index: e.embedding for e in partial.parse().data}
    full = {e.index: e.embedding for e in first.parse().data}
    assert vectors[1] == full[0] and vectors[2] == full[1] and len(vectors) == 3
    again = client.embeddings.with_raw_response.create(model="openai-embed", input=[b, c])
    assert again.headers["x-lockgate-cache"] == "hit"
    assert [e.embedding for e in again.parse().data] == [vectors[2], vectors[0]]


def test_purge_is_admin_only_and_confined(cached):
    marker = "x-" + uuid.uuid4().hex
    _chat(cached, marker)
    key = _chat(cached, marker).headers["x-litellm-cache-key"]
    user_key = _team_key(cached, None)
    for path, body in (("/cache/delete", {"keys": [key]}), ("/cache/flushall", None), ("/cache/flush", {})):
        denied = httpx.post(cached.url + path, json=body, headers={"Authorization": f"Bearer {user_key}"})
        assert denied.status_code == 403, path
    assert httpx.get(cached.url + "/cache/ping", headers=ADMIN).json()["status"] == "healthy"
    r = httpx.post(cached.url + "/cache/delete", headers=ADMIN, json={"keys": [key]})
    assert r.json()["deleted"] == 1
    assert _chat(cached, marker).headers["x-lockgate-cache"] == "miss"
    r = httpx.post(cached.url + "/cache/flush", headers=ADMIN, json={"scope": "master"})
    assert r.json()["deleted"] >= 1
    assert _chat(cached, marker).headers["x-lockgate-cache"] == "miss"
    assert httpx.post(cached.url + "/cache/flushall", headers=ADMIN).json()["status"] == "success"
    assert _chat(cached, marker).headers["x-lockgate-cache"] == "miss"


def test_default_off_caches_only_the_requests_that_ask(mocks, tmp_path):
    config = gateway_config(mocks)
    config["litellm_settings"] = {"cache": True, "cache_params": {"mode": "default_off",
                                                                  "supported_call_types": ["acompletion"]}}
    gw = start_gateway(config, tmp_path)
    try:
        marker = "off-" + uuid.uuid4().hex
        assert "x-lockgate-cache" not in _chat(gw, marker).headers
        assert "x-lockgate-cache" not in _chat(gw, marker).headers
        opt_in = {"extra_body": {"cache": {"use-cache": True}}}
        assert _chat(gw, marker, **opt_in).headers["x-lockgate-cache"] == "miss"
        assert _chat(gw, marker, **opt_in).headers["x-lockgate-cache"] == "hit"
        embed = _oai(gw).embeddings.with_raw_response.create(model="openai-embed", input=["x"],
                                                              extra_body={"cache": {"use-cache": True}})
        assert "x-lockgate-cache" not in embed.headers  # not a supported call type here
    finally:
        gw.process.terminate()
        gw.process.wait(10)


def test_hits_take_no_tokens_from_the_tpm_limit(cached):
    key = _team_key(cached, None, tpm_limit=120)  # a request reserves ~its prompt, then settles 18 tokens
    marker = "tpm-" + uuid.uuid4().hex
    assert _chat(cached, marker, key=key).headers["x-lockgate-cache"] == "miss"
    for _ in range(15):  # 15 x 18 tokens would be far over the limit if hits counted
        assert _chat(cached, marker, key=key).headers["x-lockgate-cache"] == "hit"
    assert _chat(cached, "fresh " + marker, key=key).headers["x-lockgate-cache"] == "miss"


# ---------------------------------------------------------------- Redis: shared by instances, fail-open


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of this test's own (it is killed mid-test), on a free port."""
    from tests.conftest import start_redis_server

    proc, port = start_redis_server(tmp_path)
    yield proc, port
    proc.kill()
    proc.wait(5)


def _redis_cached(mocks, tmp, port: int, namespace: str):
    config = gateway_config(mocks)
    config["litellm_settings"] = {"cache": True, "cache_params": {
        "type": "redis", "host": "127.0.0.1", "port": port, "namespace": namespace, "ttl": 600}}
    return start_gateway(config, tmp)


def test_two_instances_share_the_redis_cache_and_flush_stays_in_its_namespace(mocks, tmp_path, private_redis):
    import redis

    _proc, port = private_redis
    client = redis.Redis(port=port)
    client.set("lockgate:k:abc:rpm:1", "7")  # what else lives in the same Redis: counters
    client.set("other-app:thing", "x")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _redis_cached(mocks, tmp_path / "a", port, "ns1")
    b = _redis_cached(mocks, tmp_path / "b", port, "ns1")
    try:
        marker = "shared-" + uuid.uuid4().hex
        assert _chat(a, marker).headers["x-lockgate-cache"] == "miss"
        hit = _chat(b, marker)
        assert hit.headers["x-lockgate-cache"] == "hit"
        assert _upstream(mocks, "openai", marker) == 1
        assert any(k.startswith(b"ns1:lockgate:cache:master/") for k in client.keys("*"))
        flushed = httpx.post(b.url + "/cache/flushall", headers=ADMIN).json()
        assert flushed["deleted"] >= 1
        assert client.get("lockgate:k:abc:rpm:1") == b"7" and client.get("other-app:thing") == b"x"
        assert _chat(a, marker).headers["x-lockgate-cache"] == "miss"
    finally:
        for gw in (a, b):
            gw.process.terminate()
            gw.process.wait(10)


def test_a_redis_outage_is_a_bypass_never_an_error(mocks, tmp_path, private_redis):
    proc, port = private_redis
    gw = _redis_cached(mocks, tmp_path, port, "ns2")
    try:
        marker = "outage-" + uuid.uuid4().hex
        _chat(gw, marker)
        assert _chat(gw, marker).headers["x-lockgate-cache"] == "hit"
        proc.kill()
        proc.wait(5)
        started = time.monotonic()
        for _ in range(5):
            resp = _chat(gw, marker)
            assert resp.status_code == 200 and resp.parse().choices[0].message.content
            assert resp.headers["x-lockgate-cache"] == "bypass"
        assert time.monotonic() - started < 5  # no per-request wait on the dead server
        ping = httpx.get(gw.url + "/cache/ping", headers=ADMIN)
        assert ping.status_code == 503 and "cache" in ping.json()["error"]["message"]
        assert gw.log().count("cache") >= 1  # logged (once), never a traceback
        assert "Traceback" not in gw.log()
    finally:
        gw.process.terminate()
        gw.process.wait(10)
