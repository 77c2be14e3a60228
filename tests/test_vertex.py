"""Google Vertex AI through the gateway: Gemini (OpenAI clients translated), Claude
(rawPredict; Anthropic clients passed through), OAuth2 tokens from service-account
credentials fetched from a mock token endpoint that verifies the signed JWT.
"""

from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lockgate.config import Deployment
from lockgate.providers import registry
from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import CACHED_TOKENS, COMPLETION_TOKENS, MOCK_TEXT, PROMPT_TOKENS
from tests.mocks import vertex_api as vmock
from tests.mocks.anthropic_api import THINKING_SIGNATURE, THINKING_TEXT

SA_PROJECT = "lockgate-test-project"
CLAUDE = "claude-sonnet-4-5@20250929"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def _service_account(state: vmock.TokenState, name: str, token_uri: str, expires_in: int = 3599,
                     registered: bool = True) -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"{name}@{SA_PROJECT}.iam.gserviceaccount.com"
    if registered:
        state.accounts[email] = vmock.Account(key.public_key(), f"kid-{name}", expires_in)
    else:  # the mock knows the account, but with another key: the JWT signature cannot verify
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        state.accounts[email] = vmock.Account(other.public_key(), f"kid-{name}", expires_in)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": SA_PROJECT, "private_key_id": f"kid-{name}",
            "private_key": pem, "client_email": email, "client_id": "1234567890",
            "token_uri": token_uri}


@pytest.fixture(scope="module")
def vertex():
    state = vmock.TokenState()
    host = MockHost()
    server = host.start("vertex", vmock.app_factory(state))
    server.state = state  # type: ignore[attr-defined]
    yield server
    host.stop()


@pytest.fixture(scope="module")
def accounts(vertex, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vertex-sa")
    uri = vertex.url + "/token"
    out = {}
    for name, kwargs in {"main": {}, "inline": {}, "short": {"expires_in": 90}, "bad": {"registered": False}}.items():
        info = _service_account(vertex.state, name, uri, **kwargs)
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(info))
        out[name] = (info, str(path))
    return out


@pytest.fixture(scope="module")
def gw(vertex, accounts, tmp_path_factory):
    def dep(name: str, model: str, account: str, **params: str) -> dict:
        return {"model_name": name, "litellm_params": {
            "model": model, "api_base": vertex.url, "vertex_credentials": accounts[account][1], **params}}

    config = {
        "model_list": [
            dep("gemini", "vertex_ai/gemini-2.5-flash", "main", vertex_location="us-central1"),
            dep("claude", f"vertex_ai/{CLAUDE}", "main", vertex_project="explicit-project", vertex_location="global"),
            {"model_name": "claude-inline", "litellm_params": {
                "model": f"vertex_ai/{CLAUDE}", "api_base": vertex.url, "vertex_location": "us-east5",
                "vertex_credentials": json.dumps(accounts["inline"][0])}},
            dep("gemini-short", "vertex_ai/gemini-2.5-flash", "short"),
            dep("gemini-bad", "vertex_ai/gemini-2.5-flash", "bad"),
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "router_settings": {"disable_cooldowns": True, "num_retries": 0},
    }
    running = start_gateway(config, tmp_path_factory.mktemp("vertex-gw"), {"GOOGLE_APPLICATION_CREDENTIALS": ""})
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


def _last_model_call(vertex):  # noqa: ANN001, ANN202
    """The last model request (a background token refresh may have been recorded after it)."""
    return next(r for r in reversed(vertex.recorder.requests) if r.path != "/token")


def _email(name: str) -> str:
    return f"{name}@{SA_PROJECT}.iam.gserviceaccount.com"


# ---------------------------------------------------------------- tokens


def test_token_fetched_once_for_many_requests(oai, ant, vertex):
    for _ in range(3):
        assert oai.chat.completions.create(model="gemini", messages=_user("hi")).choices[0].message.content == MOCK_TEXT
        list(oai.chat.completions.create(model="gemini", messages=_user("hi"), stream=True))
        assert ant.messages.create(model="claude", max_tokens=10, messages=_user("hi")).content[0].text == MOCK_TEXT
    assert vertex.state.grants[_email("main")] == 1  # gemini and claude share the credentials file
    calls = [r for r in vertex.recorder.requests if r.path != "/token" and "main" in r.headers.get("authorization", "")]
    assert len(calls) == 9 and {c.headers["authorization"] for c in calls} == {"Bearer ya29.mock-main-1"}


def test_short_lived_token_is_refreshed_before_expiry(oai, vertex):
    email = _email("short")
    oai.chat.completions.create(model="gemini-short", messages=_user("hi"))
    assert vertex.state.grants[email] == 1
    # 90 s left (< 5 min): answered with the current token while a new one is fetched in the background
    oai.chat.completions.create(model="gemini-short", messages=_user("hi"))
    assert _last_model_call(vertex).headers["authorization"] == "Bearer ya29.mock-short-1"
    deadline = time.monotonic() + 5
    while vertex.state.grants[email] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert vertex.state.grants[email] >= 2
    # the new token is used as soon as the background refresh has stored it
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        oai.chat.completions.create(model="gemini-short", messages=_user("hi"))
        if _last_model_call(vertex).headers["authorization"] != "Bearer ya29.mock-short-1":
            break
        time.sleep(0.05)
    assert _last_model_call(vertex).headers["authorization"].startswith("Bearer ya29.mock-short-")
    assert _last_model_call(vertex).headers["authorization"] != "Bearer ya29.mock-short-1"


def test_rejected_credentials_give_a_clear_error(oai, gw, accounts):
    with pytest.raises(openai.APIStatusError) as err:
        oai.chat.completions.create(model="gemini-bad", messages=_user("hi"))
    assert err.value.status_code == 502
    assert "access token" in err.value.message and "RefreshError" in err.value.message
    log = gw.log()
    for info, _path in accounts.values():
        assert info["private_key"].splitlines()[1] not in log
    assert "ya29.mock" not in log


def test_inline_json_credentials(ant, vertex):
    assert ant.messages.create(model="claude-inline", max_tokens=10, messages=_user("hi")).content[0].text == MOCK_TEXT
    assert vertex.recorder.last.path == (
        f"/v1/projects/{SA_PROJECT}/locations/us-east5/publishers/anthropic/models/{CLAUDE}:rawPredict")


# ---------------------------------------------------------------- Gemini on Vertex


def test_gemini_openai_client(oai, vertex):
    resp = oai.chat.completions.create(model="gemini", max_tokens=50, messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}])
    assert resp.choices[0].message.content == MOCK_TEXT
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert resp.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    sent = vertex.recorder.last
    assert sent.path == (f"/v1/projects/{SA_PROJECT}/locations/us-central1/publishers/google/models/"
                         "gemini-2.5-flash:generateContent")
    assert sent.body["systemInstruction"]["parts"][0]["text"] == "be brief"
    assert sent.body["generationConfig"]["maxOutputTokens"] == 50


def test_gemini_openai_client_stream_and_tools(oai, vertex):
    chunks = list(oai.chat.completions.create(model="gemini", messages=_user("hello"), stream=True,
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == MOCK_TEXT
    assert vertex.recorder.last.path.endswith(":streamGenerateContent")
    assert vertex.recorder.last.query == {"alt": "sse"}
    assert [c.usage for c in chunks if c.usage][-1].completion_tokens == COMPLETION_TOKENS
    resp = oai.chat.completions.create(model="gemini", messages=_user("TRIGGER_TOOL"), tools=TOOLS)
    call = resp.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})


# ---------------------------------------------------------------- Claude on Vertex


def _anthropic_request() -> dict:
    return {
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello TRIGGER_THINK", "cache_control": {"type": "ephemeral"}}]}],
        "extra_body": {"lockgate_unknown_field": [1, 2]},
        "extra_headers": {"anthropic-beta": "context-1m-2025-08-07"},
    }


def _check_claude_body(sent, request: dict, stream: bool) -> None:
    method = "streamRawPredict" if stream else "rawPredict"
    assert sent.path == f"/v1/projects/explicit-project/locations/global/publishers/anthropic/models/{CLAUDE}:{method}"
    assert "model" not in sent.body
    assert sent.body["anthropic_version"] == "vertex-2023-10-16"
    assert sent.body["lockgate_unknown_field"] == [1, 2]
    assert sent.body["system"] == request["system"]
    assert sent.body["thinking"] == request["thinking"]
    assert sent.body["messages"] == request["messages"]
    assert sent.headers["anthropic-beta"] == "context-1m-2025-08-07"


def test_claude_passthrough(ant, vertex):
    request = _anthropic_request()
    msg = ant.messages.create(model="claude", **request)
    assert (msg.content[0].thinking, msg.content[0].signature) == (THINKING_TEXT, THINKING_SIGNATURE)
    assert msg.content[1].text == MOCK_TEXT
    assert msg.usage.cache_read_input_tokens == CACHED_TOKENS
    _check_claude_body(vertex.recorder.last, request, stream=False)


def test_claude_passthrough_stream(ant, vertex):
    request = _anthropic_request()
    with ant.messages.stream(model="claude", **request) as stream:
        final = stream.get_final_message()
    assert final.content[0].thinking == THINKING_TEXT and final.content[1].text == MOCK_TEXT
    assert final.usage.output_tokens == COMPLETION_TOKENS
    _check_claude_body(vertex.recorder.last, request, stream=True)
    assert vertex.recorder.last.body["stream"] is True


def test_claude_openai_client(oai, vertex):
    resp = oai.chat.completions.create(model="claude", max_tokens=30, messages=_user("hello"))
    assert resp.choices[0].message.content == MOCK_TEXT
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    chunks = list(oai.chat.completions.create(model="claude", messages=_user("hello"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == MOCK_TEXT
    assert vertex.recorder.last.body["stream"] is True


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("model", ["gemini", "claude"])
def test_quota_429_in_both_dialects(oai, ant, model):
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model=model, messages=_user("TRIGGER_429"))
    with pytest.raises(anthropic.RateLimitError) as err:
        ant.messages.create(model=model, max_tokens=10, messages=_user("TRIGGER_429"))
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("model", ["gemini", "claude"])
def test_invalid_request_400_in_both_dialects(oai, ant, model):
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=model, messages=_user("TRIGGER_400"))
    with pytest.raises(anthropic.BadRequestError) as err:
        ant.messages.create(model=model, max_tokens=10, messages=_user("TRIGGER_400"))
    assert err.value.body["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------- URLs (unit)


@pytest.mark.parametrize(("location", "host"), [
    ("global", "https://aiplatform.googleapis.com"),
    ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
])
def test_default_endpoints(location, host):
    provider = registry()["vertex_ai"]
    for model, publisher, method in (("gemini-2.5-pro", "google", "generateContent"),
                                     (CLAUDE, "anthropic", "rawPredict")):
        dep = Deployment(model_name="m", provider="vertex_ai", model=model, id="x",
                         extra={"vertex_project": "p1", "vertex_location": location})
        url = provider.for_deployment(dep).chat_url(dep, False)
        assert url == f"{host}/v1/projects/p1/locations/{location}/publishers/{publisher}/models/{model}:{method}"
