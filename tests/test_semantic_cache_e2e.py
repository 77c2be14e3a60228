"""The semantic cache through `lockgate serve` with the official SDKs: a close paraphrase is served, the
pairs a vector confuses are not, everything but the prompt text must match, scopes never mix, and the
index is shared through Redis."""

from __future__ import annotations

import uuid

import anthropic
import httpx
import pytest

from tests.conftest import MASTER_KEY, gateway_config, start_gateway
from tests.test_response_cache import ADMIN, _chat, _team_key, _upstream


def _semantic(mocks, tmp, **params):
    config = gateway_config(mocks)
    config["litellm_settings"] = {"cache": True, "cache_params": {"type": "local-semantic", **params}}
    return start_gateway(config, tmp)


@pytest.fixture(scope="module")
def semantic(mocks, tmp_path_factory):
    gw = _semantic(mocks, tmp_path_factory.mktemp("semantic"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


def _ask(gw, text: str, **extra):
    return _chat(gw, text, **extra).headers["x-lockgate-cache"]


def test_a_close_paraphrase_is_served_from_the_cache(semantic, mocks):
    tag = uuid.uuid4().hex[:6]
    system = {"role": "system", "content": f"support bot {tag}"}
    first = _chat_with_system(semantic, system, "How do I reset my password?")
    again = _chat_with_system(semantic, system, "How can I reset my password?")
    assert first.headers["x-lockgate-cache"] == "miss"
    assert again.headers["x-lockgate-cache"] == "semantic-hit"
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert again.headers["x-litellm-cache-key"] == _key_of(semantic, system, "How do I reset my password?")
    assert _upstream(mocks, "openai", tag) == 1


def _chat_with_system(gw, system: dict, text: str, **extra):
    import openai

    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    return client.chat.completions.with_raw_response.create(
        model="openai-model", messages=[system, {"role": "user", "content": text}], **extra)


def _key_of(gw, system: dict, text: str) -> str:
    return _chat_with_system(gw, system, text).headers["x-litellm-cache-key"]


@pytest.mark.parametrize(("first", "second"), [
    ("How do I turn on dark mode?", "How do I turn off dark mode?"),
    ("What is 2+2?", "What is 2+3?"),
    ("Is Python slow?", "Is Python not slow?"),
    ("Who founded Microsoft?", "Who founded Apple?"),
    ("Does the dog bite the man?", "Does the man bite the dog?"),
])
def test_pairs_a_vector_confuses_are_not_served(semantic, first, second):
    system = {"role": "system", "content": "s-" + uuid.uuid4().hex}
    assert _chat_with_system(semantic, system, first).headers["x-lockgate-cache"] == "miss"
    assert _chat_with_system(semantic, system, second).headers["x-lockgate-cache"] == "miss"


def test_everything_but_the_prompt_text_must_match(semantic):
    system = {"role": "system", "content": "g-" + uuid.uuid4().hex}
    _chat_with_system(semantic, system, "How do I reset my password?")
    assert _chat_with_system(semantic, system, "How can I reset my password?",
                             temperature=0.1).headers["x-lockgate-cache"] == "miss"
    other = {"role": "system", "content": system["content"] + " (other)"}
    assert _chat_with_system(semantic, other, "How can I reset my password?").headers["x-lockgate-cache"] == "miss"


def test_semantic_hits_are_scoped_like_exact_ones(semantic):
    a = _team_key(semantic, "sa-" + uuid.uuid4().hex[:8])
    b = _team_key(semantic, "sb-" + uuid.uuid4().hex[:8])
    tag = uuid.uuid4().hex
    assert _ask(semantic, f"How do I reset my password for {tag}?", key=a) == "miss"
    assert _ask(semantic, f"How can I reset my password for {tag}?", key=b) == "miss"
    assert _ask(semantic, f"How can I reset my password for {tag}?", key=a) == "semantic-hit"


def test_long_conversations_use_the_exact_cache_only(semantic):
    tag = uuid.uuid4().hex
    history = []
    for i in range(3):
        history += [{"role": "user", "content": f"turn {i} {tag}"}, {"role": "assistant", "content": "ok"}]
    import openai

    client = openai.OpenAI(base_url=semantic.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)

    def ask(text):
        return client.chat.completions.with_raw_response.create(
            model="openai-model", messages=[*history, {"role": "user", "content": text}]).headers["x-lockgate-cache"]

    assert ask("How do I reset my password?") == "miss"
    assert ask("How can I reset my password?") == "miss"  # 7 messages > max_turns (4)
    assert ask("How do I reset my password?") == "hit"


def test_anthropic_door_semantic_hit(semantic, mocks):
    tag = uuid.uuid4().hex[:8]
    client = anthropic.Anthropic(base_url=semantic.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    heads = []
    for text in ("What is the capital of France?", "What's the capital of France?"):
        raw = client.messages.with_raw_response.create(model="claude-model", max_tokens=50, system=tag,
                                                       messages=[{"role": "user", "content": text}])
        heads.append(raw.headers["x-lockgate-cache"])
    assert heads == ["miss", "semantic-hit"] and _upstream(mocks, "anthropic", tag) == 1


def test_the_index_is_shared_through_redis_and_purged_with_the_cache(mocks, tmp_path):
    ns = "sem-" + uuid.uuid4().hex[:8]
    params = {"type": "redis-semantic", "host": "127.0.0.1", "port": 6379, "namespace": ns}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _semantic(mocks, tmp_path / "a", **params)
    b = _semantic(mocks, tmp_path / "b", **params)
    try:
        tag = uuid.uuid4().hex
        assert _ask(a, f"How do I reset my password on {tag}?") == "miss"
        assert _ask(b, f"How can I reset my password on {tag}?") == "semantic-hit"
        assert httpx.post(a.url + "/cache/flushall", headers=ADMIN).json()["status"] == "success"
        assert _ask(b, f"How can I reset my password on {tag}?") == "miss"
    finally:
        for gw in (a, b):
            gw.process.terminate()
            gw.process.wait(10)
        import redis

        client = redis.Redis()
        keys = list(client.scan_iter(match=ns + ":*"))
        if keys:
            client.delete(*keys)


def test_an_embedding_deployment_of_the_config_can_embed(mocks, tmp_path):
    gw = _semantic(mocks, tmp_path, embedding_model="openai-embed")
    try:
        tag = uuid.uuid4().hex
        assert _ask(gw, f"first question {tag}") == "miss"
        sent = [r.body["input"] for r in mocks["openai"].recorder.requests
                if r.path.endswith("/embeddings") and tag in str(r.body)]
        assert sent and sent[0] == [f"first question {tag}"]  # the prompt text, embedded by the deployment
        assert _ask(gw, f"first question {tag}") == "hit"
    finally:
        gw.process.terminate()
        gw.process.wait(10)
