"""litellm_settings.cache / cache_params as LiteLLM writes them, and the request key's canonical form."""

from __future__ import annotations

import pytest

from lockgate.cache.keys import read_controls, request_key, scope_of
from lockgate.config import ConfigError, from_dict
from lockgate.context import RequestContext
from lockgate.dialects import openai_chat
from lockgate.errors import BadRequest, PermissionDenied
from lockgate.governance.types import KeyRecord, Principal


def _settings(**params):
    return from_dict({"model_list": [], "litellm_settings": {"cache": True, "cache_params": params}})


def test_defaults_and_litellm_names():
    s = _settings().cache
    assert s is not None and (s.type, s.ttl, s.mode, s.scope) == ("local", 3600.0, "default_on", "team")
    assert from_dict({"model_list": []}).cache is None
    r = _settings(type="redis", host="cache.internal", port=6380, password="p@ss", namespace="app",
                  supported_call_types=["aembedding"], ttl=60).cache
    assert r.redis_url == "redis://:p%40ss@cache.internal:6380/0" and r.shared and r.namespace == "app"
    assert r.routes == {"embeddings"} and r.ttl == 60
    q = _settings(type="qdrant-semantic", similarity_threshold=0.9)
    assert q.cache.semantic and q.cache.similarity_threshold == 0.9
    assert any("qdrant" in w for w in q.warnings)
    assert any("unknown_thing" in w for w in _settings(unknown_thing=1).warnings)


@pytest.mark.parametrize(("params", "named"), [
    ({"type": "memcached"}, "type"), ({"mode": "sometimes"}, "mode"), ({"scope": "org"}, "scope"),
    ({"ttl": -1}, "ttl"), ({"supported_call_types": ["fly"]}, "supported_call_types"),
    ({"type": "redis"}, "Redis"), ({"type": "local-semantic", "similarity_threshold": 1.5}, "similarity_threshold"),
])
def test_bad_settings_fail_at_start_naming_the_key(params, named, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_HOST", raising=False)
    with pytest.raises(ConfigError, match=named):
        _settings(**params)


def _ctx(body, principal="master", headers=None):
    ctx = RequestContext(request_id="r", route="chat", dialect=openai_chat, headers=headers or {})
    ctx.body, ctx.principal, ctx.model_group = body, principal, "g"
    return ctx


def test_the_key_is_the_whole_request_in_canonical_form():
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}
    same = {"temperature": 0.5, "messages": [{"content": "hi", "role": "user"}], "model": "m",
            "user": "u1", "metadata": {"a": 1}, "stream_options": {"include_usage": True}, "cache": {"ttl": 5}}
    assert request_key(_ctx(base), "s") == request_key(_ctx(same), "s")
    assert request_key(_ctx(base), "s") != request_key(_ctx({**base, "anything_new": 1}), "s")
    assert request_key(_ctx(base), "s") != request_key(_ctx(base), "t")
    streamed = _ctx(base)
    streamed.stream = True
    assert request_key(streamed, "s") != request_key(_ctx(base), "s")


def test_scope_comes_from_the_principal_only():
    teamed = Principal(key=KeyRecord(token_hash="a" * 64, team_id="t1"))
    alone = Principal(key=KeyRecord(token_hash="b" * 64))
    assert scope_of(_ctx({}, teamed), "team") == "team:t1"
    assert scope_of(_ctx({}, teamed), "key") == "key:" + "a" * 32
    assert scope_of(_ctx({}, alone), "team") == "key:" + "b" * 32
    assert scope_of(_ctx({}, "master"), "global") == "global"


def test_controls_and_their_limits():
    c = read_controls(_ctx({"cache": {"no-cache": True, "ttl": 30, "s-maxage": 5, "namespace": "n"}}))
    assert (c.no_cache, c.no_store, c.ttl, c.s_maxage, c.namespace) == (True, False, 30.0, 5.0, "n")
    h = read_controls(_ctx({}, headers={"cache-control": "no-store, s-maxage=9"}))
    assert h.no_store and h.s_maxage == 9
    with pytest.raises(BadRequest):
        read_controls(_ctx({"cache": "yes"}))
    with pytest.raises(BadRequest):
        read_controls(_ctx({"cache": {"namespace": "a/b"}}))
    limited = Principal(key=KeyRecord(token_hash="c" * 64, allowed_cache_controls=["no-cache"]))
    assert read_controls(_ctx({"cache": {"no-cache": True}}, limited)).no_cache
    with pytest.raises(PermissionDenied, match="ttl"):
        read_controls(_ctx({"cache": {"ttl": 3}}, limited))
