"""Amazon Bedrock through the gateway: Converse (translated), Anthropic models over
InvokeModel (passthrough for Anthropic clients), SigV4, event streams, errors, embeddings.

The mock (tests/mocks/bedrock_api.py) verifies every SigV4 signature with botocore
and speaks AWS event-stream framing; the clients are the official SDKs.
"""

from __future__ import annotations

import base64
import zlib

import anthropic
import openai
import pytest

from lockgate.errors import UpstreamError
from lockgate.transport.eventstream import EventStreamParser
from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import CACHED_TOKENS, COMPLETION_TOKENS, MOCK_TEXT, PROMPT_TOKENS
from tests.mocks import bedrock_api as bmock
from tests.mocks.anthropic_api import THINKING_SIGNATURE, THINKING_TEXT

CLAUDE_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
ARN_ID = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
STATIC = {"aws_access_key_id": bmock.ACCESS_KEY_ID, "aws_secret_access_key": bmock.SECRET_KEY,
          "aws_region_name": bmock.REGION}


@pytest.fixture(scope="module")
def bedrock():
    host = MockHost()
    server = host.start("bedrock", bmock.create_app)
    yield server
    host.stop()


@pytest.fixture(scope="module")
def gw(bedrock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bedrock")
    (tmp / "credentials").write_text(
        f"[lockgate-test]\naws_access_key_id = {bmock.ACCESS_KEY_ID}\naws_secret_access_key = {bmock.SECRET_KEY}\n")
    (tmp / "config").write_text("[profile lockgate-test]\nregion = us-east-1\n")

    def dep(name: str, model: str, **params: str) -> dict:
        return {"model_name": name, "litellm_params": {"model": model, "api_base": bedrock.url, **params}}

    config = {
        "model_list": [
            dep("nova", "bedrock/amazon.nova-pro-v1:0", **STATIC),
            dep("claude-converse", f"bedrock/converse/{CLAUDE_ID}", **STATIC),
            dep("claude", f"bedrock/{CLAUDE_ID}", aws_access_key_id=bmock.TEMP_ACCESS_KEY_ID,
                aws_secret_access_key=bmock.TEMP_SECRET_KEY, aws_session_token=bmock.SESSION_TOKEN,
                aws_region_name=bmock.REGION),
            dep("claude-arn", f"bedrock/{ARN_ID}", **STATIC),
            dep("bad-signature", "bedrock/amazon.nova-pro-v1:0", **{**STATIC, "aws_secret_access_key": "wrong"}),
            dep("env-creds", "bedrock/amazon.nova-lite-v1:0"),
            dep("profile-creds", "bedrock/amazon.nova-lite-v1:0", aws_profile_name="lockgate-test"),
            dep("titan", "bedrock/amazon.titan-embed-text-v2:0", **STATIC),
            dep("cohere", "bedrock/cohere.embed-english-v3", **STATIC),
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "router_settings": {"disable_cooldowns": True, "num_retries": 0},
    }
    env = {
        "AWS_ACCESS_KEY_ID": bmock.TEMP_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": bmock.TEMP_SECRET_KEY,
        "AWS_SESSION_TOKEN": bmock.SESSION_TOKEN, "AWS_REGION": bmock.REGION, "AWS_DEFAULT_REGION": bmock.REGION,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "credentials"), "AWS_CONFIG_FILE": str(tmp / "config"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    running = start_gateway(config, tmp, env)
    yield running
    running.process.terminate()
    running.process.wait(10)


@pytest.fixture(scope="module")
def oai(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def ant(gw):
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------- Converse via the OpenAI SDK


def test_converse_text_system_usage(oai, bedrock):
    resp = oai.chat.completions.create(
        model="nova", max_tokens=50, temperature=0.3, top_p=0.9, stop=["END"],
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}])
    assert resp.choices[0].message.content == MOCK_TEXT
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    assert resp.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    assert resp.usage.completion_tokens == COMPLETION_TOKENS
    sent = bedrock.recorder.last
    assert sent.path == "/model/amazon.nova-pro-v1%3A0/converse"
    assert sent.body["system"] == [{"text": "be brief"}]
    assert sent.body["messages"] == [{"role": "user", "content": [{"text": "hello"}]}]
    assert sent.body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"]}
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={bmock.ACCESS_KEY_ID}/")


def test_converse_stream(oai):
    chunks = list(oai.chat.completions.create(model="nova", messages=_user("hello"), stream=True,
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == MOCK_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage][-1]
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS


def test_converse_image_and_cache_points(oai, bedrock):
    oai.chat.completions.create(model="nova", messages=[
        {"role": "system", "content": [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
        ]}])
    body = bedrock.recorder.last.body
    assert body["system"] == [{"text": "long rules"}, {"cachePoint": {"type": "default"}}]
    assert body["messages"][0]["content"] == [
        {"text": "what is this?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]


def test_converse_image_url_is_refused(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="nova", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "base64" in info.value.message


def test_converse_tools_and_tool_results(oai, bedrock):
    first = oai.chat.completions.create(model="nova", messages=_user("weather? TRIGGER_TOOL"), tools=TOOLS,
                                        tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"Paris"}')
    sent = bedrock.recorder.last.body["toolConfig"]
    assert sent["toolChoice"] == {"any": {}}
    assert sent["tools"][0]["toolSpec"]["inputSchema"]["json"] == TOOLS[0]["function"]["parameters"]
    second = oai.chat.completions.create(model="nova", tools=TOOLS, messages=[
        {"role": "user", "content": "weather? TRIGGER_TOOL"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        {"role": "user", "content": "thanks"},
    ])
    assert second.choices[0].message.content == MOCK_TEXT
    msgs = bedrock.recorder.last.body["messages"]
    assert msgs[1] == {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": call.id, "name": "get_weather", "input": {"city": "Paris"}}}]}
    assert msgs[2]["content"][0] == {"toolResult": {"toolUseId": call.id, "content": [{"text": "sunny, 21C"}],
                                                    "status": "success"}}
    assert msgs[2]["content"][1] == {"text": "thanks"}


def test_converse_tool_call_stream(oai):
    chunks = list(oai.chat.completions.create(model="nova", messages=_user("TRIGGER_TOOL"), tools=TOOLS,
                                              stream=True))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "get_weather" and calls[0].id.startswith("tooluse_")
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"city":"Paris"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize(("word", "finish", "stop"), [
    ("TRIGGER_MAXTOKENS", "length", "max_tokens"),
    ("TRIGGER_GUARDRAIL", "content_filter", "refusal"),
])
def test_converse_stop_reasons(oai, ant, word, finish, stop):
    assert oai.chat.completions.create(model="nova", messages=_user(word)).choices[0].finish_reason == finish
    assert ant.messages.create(model="nova", max_tokens=20, messages=_user(word)).stop_reason == stop


# ---------------------------------------------------------------- Converse via the Anthropic SDK


def test_converse_anthropic_client(ant, bedrock):
    msg = ant.messages.create(model="nova", max_tokens=30, system="be brief", messages=_user("hello"))
    assert msg.content[0].text == MOCK_TEXT
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == PROMPT_TOKENS - CACHED_TOKENS
    assert msg.usage.cache_read_input_tokens == CACHED_TOKENS
    assert msg.usage.output_tokens == COMPLETION_TOKENS
    assert bedrock.recorder.last.body["system"] == [{"text": "be brief"}]


def test_converse_anthropic_client_stream_tools(ant):
    tools = [{"name": "get_weather", "description": "weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]
    with ant.messages.stream(model="nova", max_tokens=30, tools=tools, messages=_user("TRIGGER_TOOL")) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use" and final.content[-1].input == {"city": "Paris"}
    assert final.usage.output_tokens == COMPLETION_TOKENS


def test_converse_thinking_for_anthropic_models(ant, bedrock):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    msg = ant.messages.create(model="claude-converse", max_tokens=2048, thinking=thinking, extra_body={"top_k": 5},
                              messages=_user("TRIGGER_THINK"))
    assert bedrock.recorder.last.path.endswith("/converse")
    assert bedrock.recorder.last.body["additionalModelRequestFields"] == {"thinking": thinking, "top_k": 5}
    assert (msg.content[0].type, msg.content[0].thinking, msg.content[0].signature) == (
        "thinking", THINKING_TEXT, THINKING_SIGNATURE)
    assert msg.content[1].text == MOCK_TEXT
    with ant.messages.stream(model="claude-converse", max_tokens=2048, thinking=thinking,
                             messages=_user("TRIGGER_THINK")) as stream:
        final = stream.get_final_message()
    assert final.content[0].thinking == THINKING_TEXT and final.content[0].signature == THINKING_SIGNATURE


# ---------------------------------------------------------------- Anthropic on Bedrock (InvokeModel)


def _anthropic_request() -> dict:
    return {
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
        "extra_body": {"lockgate_unknown_field": {"kept": True}},
        "extra_headers": {"anthropic-beta": "context-1m-2025-08-07, interleaved-thinking-2025-05-14"},
    }


def _check_invoke_body(body: dict, request: dict) -> None:
    assert "model" not in body and "stream" not in body
    assert body["anthropic_version"] == "bedrock-2023-05-31"
    assert body["anthropic_beta"] == ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"]
    assert body["lockgate_unknown_field"] == {"kept": True}
    assert body["system"] == request["system"]
    assert body["thinking"] == request["thinking"]
    assert body["messages"] == request["messages"]


def test_invoke_passthrough(ant, bedrock):
    request = _anthropic_request()
    msg = ant.messages.create(model="claude", **request)
    assert msg.content[0].text == MOCK_TEXT
    assert msg.usage.cache_read_input_tokens == CACHED_TOKENS
    sent = bedrock.recorder.last
    assert sent.path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    assert sent.headers["x-amz-security-token"] == bmock.SESSION_TOKEN
    _check_invoke_body(sent.body, request)


def test_invoke_passthrough_stream(ant, bedrock):
    request = _anthropic_request()
    with ant.messages.stream(model="claude", **request) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert final.content[0].text == MOCK_TEXT
    assert final.usage.output_tokens == COMPLETION_TOKENS
    assert events[0] == "message_start" and "message_stop" in events
    sent = bedrock.recorder.last
    assert sent.path.endswith("/invoke-with-response-stream")
    _check_invoke_body(sent.body, request)


def test_invoke_passthrough_stream_thinking(ant):
    with ant.messages.stream(model="claude", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                             messages=_user("TRIGGER_THINK")) as stream:
        final = stream.get_final_message()
    assert final.content[0].thinking == THINKING_TEXT and final.content[0].signature == THINKING_SIGNATURE
    assert final.content[1].text == MOCK_TEXT


def test_invoke_from_openai_client(oai, bedrock):
    resp = oai.chat.completions.create(model="claude", max_tokens=40, messages=_user("hello"))
    assert resp.choices[0].message.content == MOCK_TEXT
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    assert bedrock.recorder.last.body["max_tokens"] == 40
    chunks = list(oai.chat.completions.create(model="claude", messages=_user("TRIGGER_TOOL"), tools=TOOLS,
                                              stream=True))
    args = "".join(tc.function.arguments or "" for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ())
    assert args == '{"city": "Paris"}' or args == '{"city":"Paris"}'


def test_invoke_with_inference_profile_arn(ant, bedrock):
    assert ant.messages.create(model="claude-arn", max_tokens=20, messages=_user("hi")).content[0].text == MOCK_TEXT
    assert bedrock.recorder.last.path == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
        "global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("model", ["nova", "claude"])
def test_throttling_is_429_in_both_dialects(oai, ant, model):
    with pytest.raises(openai.RateLimitError) as oerr:
        oai.chat.completions.create(model=model, messages=_user("TRIGGER_429"))
    assert "Too many requests" in oerr.value.message
    with pytest.raises(anthropic.RateLimitError) as aerr:
        ant.messages.create(model=model, max_tokens=10, messages=_user("TRIGGER_429"))
    assert aerr.value.body["type"] == "error"
    assert aerr.value.body["error"]["type"] == "rate_limit_error"
    assert "ThrottlingException" in aerr.value.body["error"]["message"]


@pytest.mark.parametrize("model", ["nova", "claude"])
def test_validation_is_400_in_both_dialects(oai, ant, model):
    with pytest.raises(openai.BadRequestError) as oerr:
        oai.chat.completions.create(model=model, messages=_user("TRIGGER_400"))
    assert oerr.value.body["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError) as aerr:
        ant.messages.create(model=model, max_tokens=10, messages=_user("TRIGGER_400"))
    assert aerr.value.body["error"]["type"] == "invalid_request_error"
    assert "mock invalid request" in aerr.value.body["error"]["message"]


def test_exception_inside_a_stream(oai, ant):
    with pytest.raises(openai.APIError) as oerr:
        list(oai.chat.completions.create(model="nova", messages=_user("TRIGGER_STREAMEXC"), stream=True))
    assert "Too many tokens" in str(oerr.value)
    with pytest.raises(anthropic.APIStatusError) as aerr:
        with ant.messages.stream(model="claude", max_tokens=10, messages=_user("TRIGGER_STREAMEXC")) as stream:
            list(stream)
    assert "Too many tokens" in str(aerr.value)


def test_bad_signature_is_refused(oai):
    with pytest.raises(openai.PermissionDeniedError) as err:
        oai.chat.completions.create(model="bad-signature", messages=_user("hi"))
    assert "signature" in err.value.message


# ---------------------------------------------------------------- credentials


@pytest.mark.parametrize("model", ["env-creds", "profile-creds"])
def test_default_chain_credentials(oai, bedrock, model):
    assert oai.chat.completions.create(model=model, messages=_user("hi")).choices[0].message.content == MOCK_TEXT
    key = bmock.TEMP_ACCESS_KEY_ID if model == "env-creds" else bmock.ACCESS_KEY_ID
    assert bedrock.recorder.last.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={key}/")


def test_no_secret_in_logs(gw, oai):
    oai.chat.completions.create(model="nova", messages=_user("hi"))
    log = gw.log()
    for secret in (bmock.SECRET_KEY, bmock.TEMP_SECRET_KEY, bmock.SESSION_TOKEN):
        assert secret not in log


# ---------------------------------------------------------------- embeddings


def test_titan_embeddings_one_call_per_input(oai, bedrock):
    before = len(bedrock.recorder.requests)
    resp = oai.embeddings.create(model="titan", input=["first text", "second longer text"], dimensions=256)
    calls = bedrock.recorder.requests[before:]
    assert [c.body for c in calls] == [{"inputText": "first text", "dimensions": 256},
                                       {"inputText": "second longer text", "dimensions": 256}]
    assert all(c.path == "/model/amazon.titan-embed-text-v2%3A0/invoke" for c in calls)
    assert [d.embedding for d in resp.data] == [bmock.vector("first text", 256), bmock.vector("second longer text", 256)]
    assert resp.usage.prompt_tokens == 5


def test_cohere_embeddings(oai, bedrock):
    resp = oai.embeddings.create(model="cohere", input=["a", "b"])
    assert bedrock.recorder.last.body == {"texts": ["a", "b"], "input_type": "search_document"}
    assert [d.embedding for d in resp.data] == [bmock.vector("a", 16), bmock.vector("b", 16)]


def test_chat_model_refuses_embeddings(oai):
    with pytest.raises(openai.BadRequestError):
        oai.embeddings.create(model="nova", input="x")


# ---------------------------------------------------------------- event-stream framing (unit)


def test_eventstream_parser_is_incremental_and_checks_crc():
    data = bmock.event_frame("messageStart", {"role": "assistant"}) + bmock.event_frame("metadata", {"usage": {}})
    parser = EventStreamParser()
    events = [ev for i in range(len(data)) for ev in parser.feed(data[i:i + 1])]
    assert [e for e, _ in events] == ["messageStart", "metadata"]
    assert parser.flush() == []
    broken = bytearray(data)
    broken[20] ^= 0xFF
    with pytest.raises(UpstreamError):
        EventStreamParser().feed(bytes(broken))


def test_eventstream_exception_maps_status():
    with pytest.raises(UpstreamError) as err:
        EventStreamParser().feed(bmock.exception_frame("throttlingException", "slow down"))
    assert err.value.status == 429 and "slow down" in err.value.message


def test_mock_frames_match_botocore_decoder():
    """The mock's encoder agrees with botocore's own event-stream decoder."""
    from botocore.eventstream import EventStreamBuffer

    buf = EventStreamBuffer()
    payload = base64.b64encode(b'{"type":"ping"}').decode()
    buf.add_data(bmock.frame({":event-type": "chunk", ":message-type": "event"}, ('{"bytes":"%s"}' % payload).encode()))
    (message,) = list(buf)
    assert message.headers[":event-type"] == "chunk"
    assert zlib.crc32(message.payload) == zlib.crc32(('{"bytes":"%s"}' % payload).encode())
