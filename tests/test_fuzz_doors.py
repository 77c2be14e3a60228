"""Property-based fuzzing of every front door (hypothesis), through a real gateway and real mocks.

Inputs: random JSON values, bodies shaped like each door's dialect with a wrong type in any field,
bytes that are not JSON, huge numbers, deep nesting and unicode.  Properties: no answer is a 5xx
other than 502/503/504; every error is an error JSON of the door's own dialect; the gateway stays up
and logs no traceback.  Bounded and reproducible: ``derandomize=True``, a fixed number of examples.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockgate.errors import is_error_body
from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import MOCK_API_KEY

EXAMPLES = 250  # per door: about 2200 requests in all, well under a minute
MODELS = ["fz-openai", "fz-anthropic", "fz-gemini"]
ALLOWED_5XX = {502, 503, 504}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from tests.mocks import anthropic_api, gemini_api, openai_responses_api

    host = MockHost()
    openai_mock = host.start("openai", openai_responses_api.create_app)
    claude = host.start("anthropic", anthropic_api.create_app)
    gemini = host.start("gemini", gemini_api.create_app)
    params = {"timeout": 10, "stream_timeout": 10}
    config = {
        "model_list": [
            {"model_name": "fz-openai", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": openai_mock.url + "/v1", "api_key": MOCK_API_KEY, **params}},
            {"model_name": "fz-anthropic", "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5", "api_base": claude.url, "api_key": MOCK_API_KEY, **params}},
            {"model_name": "fz-gemini", "litellm_params": {
                "model": "gemini/gemini-2.5-flash", "api_base": gemini.url, "api_key": MOCK_API_KEY, **params}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"drop_params": True},
        "router_settings": {"disable_cooldowns": True},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("fuzz"))
    gateway.client = httpx.Client(base_url=gateway.url, headers={"authorization": "Bearer " + MASTER_KEY},
                                  timeout=30)
    yield gateway
    gateway.client.close()
    gateway.process.terminate()
    gateway.process.wait(10)
    host.stop()


# ---------------------------------------------------------------- strategies

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["", "user", "assistant", "system", "tool", "text", "image", "tool_use", "function",
                     "\u0000", "\ud7ff\U0001f600", "🦀" * 5, "a" * 300]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def field(valid: st.SearchStrategy) -> st.SearchStrategy:
    """A field's value: right most of the time (so many bodies reach translation and the provider),
    any JSON value (a wrong type) otherwise."""
    return st.integers(0, 5).flatmap(lambda pick: json_values if pick == 0 else valid)


def shaped(required: dict, optional: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries({k: field(v) for k, v in required.items()},
                                 optional={k: field(v) for k, v in optional.items()})


# free text, and the mocks' triggers (tool calls, thinking, provider errors) so answers are translated too
text = st.one_of(st.text(max_size=40), st.sampled_from(["TRIGGER_TOOL", "TRIGGER_THINK", "TRIGGER_400",
                                                        "TRIGGER_429", "TRIGGER_500", "hello"]))
model = st.sampled_from(MODELS)
schema = st.fixed_dictionaries({"type": field(st.just("object")),
                                "properties": field(st.dictionaries(st.text(max_size=8), json_values, max_size=3))},
                               optional={"required": field(st.lists(text, max_size=2))})
openai_part = shaped({"type": st.sampled_from(["text", "image_url", "input_audio", "file"])},
                     {"text": text, "image_url": st.fixed_dictionaries({"url": field(text)}),
                      "cache_control": st.just({"type": "ephemeral"})})
openai_tool_call = shaped({"id": text, "type": st.just("function"),
                           "function": shaped({"name": text, "arguments": text}, {})}, {})
openai_message = shaped({"role": st.sampled_from(["system", "user", "assistant", "tool", "developer"])},
                        {"content": st.one_of(text, st.lists(openai_part, max_size=3)), "name": text,
                         "tool_calls": st.lists(openai_tool_call, max_size=2), "tool_call_id": text})
openai_tool = shaped({"type": st.just("function"),
                      "function": shaped({"name": text}, {"description": text, "parameters": schema})}, {})
chat_body = shaped(
    {"model": model, "messages": st.lists(openai_message, min_size=1, max_size=4)},
    {"stream": st.booleans(), "max_tokens": st.integers(), "max_completion_tokens": st.integers(),
     "temperature": st.floats(allow_nan=False, allow_infinity=False), "top_p": st.floats(0, 1),
     "n": st.integers(0, 3), "stop": st.one_of(text, st.lists(text, max_size=3)), "tools": st.lists(openai_tool, max_size=2),
     "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), json_values),
     "response_format": st.one_of(st.just({"type": "json_object"}), json_values),
     "stream_options": st.just({"include_usage": True}), "user": text, "seed": st.integers(),
     "logprobs": st.booleans(), "reasoning_effort": st.sampled_from(["low", "high"]), "fallbacks": json_values})

anthropic_block = shaped(
    {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document"])},
    {"text": text, "id": text, "name": text, "input": json_values, "tool_use_id": text,
     "content": st.one_of(text, st.lists(shaped({"type": st.just("text")}, {"text": text}), max_size=2)),
     "is_error": st.booleans(), "thinking": text, "signature": text,
     "source": shaped({"type": st.sampled_from(["base64", "url"])}, {"media_type": text, "data": text, "url": text}),
     "cache_control": st.just({"type": "ephemeral"})})
anthropic_message = shaped({"role": st.sampled_from(["user", "assistant", "system"]),
                            "content": st.one_of(text, st.lists(anthropic_block, max_size=3))}, {})
anthropic_tool = shaped({"name": text, "input_schema": schema}, {"description": text, "cache_control": json_values})
anthropic_optional = {
    "system": st.one_of(text, st.lists(anthropic_block, max_size=2)), "stream": st.booleans(),
    "temperature": st.floats(0, 1), "top_k": st.integers(), "top_p": st.floats(0, 1),
    "stop_sequences": st.lists(text, max_size=2), "tools": st.lists(anthropic_tool, max_size=2),
    "tool_choice": shaped({"type": st.sampled_from(["auto", "any", "tool", "none"])}, {"name": text}),
    "thinking": shaped({"type": st.sampled_from(["enabled", "disabled"])}, {"budget_tokens": st.integers()}),
    "metadata": shaped({}, {"user_id": text})}
messages_body = shaped({"model": model, "max_tokens": st.integers(-5, 100_000),
                        "messages": st.lists(anthropic_message, min_size=1, max_size=4)}, anthropic_optional)
count_body = shaped({"model": model, "messages": st.lists(anthropic_message, min_size=1, max_size=4)},
                    {k: v for k, v in anthropic_optional.items() if k != "stream"})

responses_content = st.lists(shaped({"type": st.sampled_from(["input_text", "output_text", "input_image"])},
                                    {"text": text, "image_url": text}), max_size=2)
responses_item = shaped({"type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning"])},
                        {"role": st.sampled_from(["user", "assistant", "system", "developer"]),
                         "content": st.one_of(text, responses_content), "call_id": text, "name": text,
                         "arguments": text, "output": text, "id": text})
responses_body = shaped(
    {"model": model, "input": st.one_of(text, st.lists(responses_item, min_size=1, max_size=4))},
    {"instructions": text, "stream": st.booleans(), "max_output_tokens": st.integers(),
     "tools": st.lists(shaped({"type": st.just("function"), "name": text}, {"parameters": schema}), max_size=2),
     "tool_choice": json_values, "temperature": st.floats(0, 2), "text": json_values, "reasoning": json_values,
     "previous_response_id": text, "store": st.booleans(), "metadata": json_values})
completions_body = shaped({"model": model, "prompt": st.one_of(text, st.lists(text, max_size=3))},
                          {"max_tokens": st.integers(), "stream": st.booleans(), "suffix": text, "echo": st.booleans(),
                           "stop": st.one_of(text, st.lists(text, max_size=2)), "logprobs": st.integers(0, 5),
                           "temperature": st.floats(0, 2), "n": st.integers(0, 3)})
embeddings_body = shaped({"model": model,
                          "input": st.one_of(text, st.lists(text, min_size=1, max_size=3), st.lists(st.integers()))},
                         {"dimensions": st.integers(), "encoding_format": st.sampled_from(["float", "base64"]),
                          "user": text})
gemini_part = shaped({}, {"text": text, "inlineData": shaped({"mimeType": text, "data": text}, {}),
                          "functionCall": shaped({"name": text}, {"args": json_values}),
                          "functionResponse": shaped({"name": text}, {"response": json_values}),
                          "thought": st.booleans(), "thoughtSignature": text})
gemini_content = shaped({"parts": st.lists(gemini_part, max_size=3)},
                        {"role": st.sampled_from(["user", "model", "function", "system"])})
generate_body = shaped(
    {"contents": st.lists(gemini_content, min_size=1, max_size=4)},
    {"systemInstruction": gemini_content,
     "generationConfig": shaped({}, {"maxOutputTokens": st.integers(), "temperature": st.floats(0, 2),
                                     "stopSequences": st.lists(text, max_size=2), "candidateCount": st.integers(),
                                     "responseMimeType": text, "responseSchema": schema,
                                     "thinkingConfig": json_values}),
     "tools": st.lists(shaped({}, {"functionDeclarations": st.lists(
         shaped({"name": text}, {"description": text, "parameters": schema}), max_size=2)}), max_size=2),
     "toolConfig": json_values, "safetySettings": json_values})
gemini_count = st.one_of(generate_body, shaped({"generateContentRequest": generate_body}, {}))


def dumps(value: object) -> bytes:
    """JSON text of any value (the stdlib's: integers of any size, lone surrogates escaped)."""
    return json.dumps(value).encode()


def deep(depth: int) -> bytes:
    return b'{"model": "fz-openai", "messages": ' + b"[" * depth + b"]" * depth + b"}"


raw_bytes = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[]", b"{}", b'"text"', b"1e999999", b"-0", b"NaN", b"{\"model\": Infinity}",
                     b'{"model": "fz-openai", "messages": [], }', b"\xff\xfe\x00{", b'{"a":' * 50,
                     b'{"model": 123456789012345678901234567890, "messages": [1]}',
                     deep(100), deep(2000), b'{"model": "fz-openai", "messages": [{"role": "user", "content": "\\ud800"}]}']),
    json_values.map(dumps),
)

# door -> (path for a model, body strategy, error shape, model in the path)
DOORS = {
    "chat": ("/v1/chat/completions", chat_body, "openai"),
    "messages": ("/v1/messages", messages_body, "anthropic"),
    "count_tokens": ("/v1/messages/count_tokens", count_body, "anthropic"),
    "responses": ("/v1/responses", responses_body, "openai"),
    "completions": ("/v1/completions", completions_body, "openai"),
    "embeddings": ("/v1/embeddings", embeddings_body, "openai"),
    "generateContent": ("/v1beta/models/{model}:generateContent", generate_body, "google"),
    "streamGenerateContent": ("/v1beta/models/{model}:streamGenerateContent?alt=sse", generate_body, "google"),
    "countTokens": ("/v1beta/models/{model}:countTokens", gemini_count, "google"),
}
path_models = st.one_of(model, model, st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                                                    exclude_characters="/?#:%"), min_size=1, max_size=20))


def last_traceback(gw) -> str:
    log = gw.log_path.read_text()
    return log[log.rfind("Traceback"):][:3000] if "Traceback" in log else ""


def check(gw, door: str, path: str, payload: bytes) -> None:
    shape = DOORS[door][2]
    resp = gw.client.post(path, content=payload, headers={"content-type": "application/json"})
    status = resp.status_code
    assert status < 500 or status in ALLOWED_5XX, (door, status, payload[:300], resp.text[:300], last_traceback(gw))
    if status >= 400:
        assert is_error_body(shape, resp.content), (door, status, payload[:300], resp.text[:300])


@pytest.mark.parametrize("door", list(DOORS))
def test_fuzz_front_door(gw, door):
    template, bodies, _ = DOORS[door]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(name=path_models, payload=st.one_of(bodies.map(dumps), bodies.map(dumps), raw_bytes))
    def run(name: str, payload: bytes) -> None:
        check(gw, door, template.format(model=name), payload)

    before = len(gw.log_path.read_bytes())
    run()
    assert gw.client.get("/health/liveliness").status_code == 200
    log = gw.log_path.read_bytes()[before:].decode(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback"):][:3000]


@pytest.mark.parametrize("door", ["chat", "messages", "responses", "generateContent"])
def test_fuzz_with_a_virtual_key(gw, door):
    """The same properties through governance: authorization, admission, pricing and settling of odd bodies."""
    created = gw.client.post("/key/generate", json={"rpm_limit": 100_000, "tpm_limit": 10**12, "max_budget": 1000,
                                                    "metadata": {"fuzz": door}})
    assert created.status_code == 200, created.text
    key = created.json()["key"]
    template, bodies, shape = DOORS[door]
    client = httpx.Client(base_url=gw.url, headers={"authorization": "Bearer " + key}, timeout=30)

    @settings(max_examples=EXAMPLES // 3, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(name=path_models, payload=st.one_of(bodies.map(dumps), raw_bytes))
    def run(name: str, payload: bytes) -> None:
        resp = client.post(template.format(model=name), content=payload, headers={"content-type": "application/json"})
        assert resp.status_code < 500 or resp.status_code in ALLOWED_5XX, (door, payload[:300], resp.text[:300],
                                                                            last_traceback(gw))
        if resp.status_code >= 400:
            assert is_error_body(shape, resp.content), (door, resp.status_code, resp.text[:300])

    before = len(gw.log_path.read_bytes())
    with client:
        run()
    assert gw.client.get("/health/liveliness").status_code == 200
    log = gw.log_path.read_bytes()[before:].decode(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback"):][:3000]
