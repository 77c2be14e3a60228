"""Conformance matrix: every front door x every provider, through ONE gateway.

Front doors (client SDK): ``chat`` (openai, chat.completions), ``messages`` (anthropic),
``responses`` (openai, client.responses), ``gemini`` (google-genai, base_url = the gateway,
api_version v1beta), ``completions`` (openai, client.completions; legacy, text only).
Providers (one chat deployment each, model name = the key): openai, groq (OpenAI-compatible
family, on the OpenAI mock), anthropic, gemini, azure, azure_ai, cohere, bedrock (Converse,
Nova), bedrock_claude (InvokeModel), vertex_gemini, vertex_claude, mock (in process).

Behaviours, one parametrized test each: text with the system prompt reaching the provider
(stream and not), tool call + tool-result round trip (stream and not), stop reason in the
door's vocabulary, usage (cached tokens where the mock reports them), upstream 429 / 400 in
the client's own error type and shape.

Pairs NOT tested, and why (``NOT_TESTED`` below is this table; everything else runs):

| door        | provider | behaviour       | reason                                                          |
|-------------|----------|-----------------|-----------------------------------------------------------------|
| completions | any      | tools           | the legacy completions API has no tools                         |
| completions | any      | system prompt   | the legacy API has no system prompt (the prompt is checked)     |
| any         | mock     | tools           | the in-process mock provider never calls tools                  |
| any         | mock     | errors          | the mock provider has no error triggers (answers in process)    |
| any         | mock     | system prompt   | no upstream request to inspect (answers in process)             |

Cached tokens are checked where the mock reports them: not for cohere (Cohere reports no
cache), mock (estimates), and not through the completions door (``text_completion`` usage
has no cached count; the legacy passthrough mock reports none either).
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors

from tests.conformance_doors import DOORS, SYSTEM, TEXT_FINISH, TOOL_FINISH, TOOL_RESULT
from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import CACHED_TOKENS, COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS
from tests.mocks import (anthropic_api, azure_api, bedrock_api, cohere_api, gemini_api, openai_responses_api,
                         vertex_api)
from tests.test_vertex import CLAUDE as VERTEX_CLAUDE
from tests.test_vertex import _service_account

MOCKED = "Mocked answer here."
# provider -> (litellm model, mock server, extra litellm_params)
PROVIDERS = {
    "openai": ("openai/gpt-4o-mini", "openai", {"api_key": MOCK_API_KEY}),
    "groq": ("groq/llama-3.1-8b-instant", "openai", {"api_key": MOCK_API_KEY}),
    "anthropic": ("anthropic/claude-sonnet-4-5", "anthropic", {"api_key": MOCK_API_KEY}),
    "gemini": ("gemini/gemini-2.5-flash", "gemini", {"api_key": MOCK_API_KEY}),
    "azure": ("azure/gpt4o-prod", "azure", {"api_key": MOCK_API_KEY, "api_version": "2024-10-21"}),
    "azure_ai": ("azure_ai/Mistral-large-2407", "azure_ai", {"api_key": MOCK_API_KEY}),
    "cohere": ("cohere/command-a-03-2025", "cohere", {"api_key": MOCK_API_KEY}),
    "bedrock": ("bedrock/amazon.nova-pro-v1:0", "bedrock", {}),
    "bedrock_claude": ("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock", {}),
    "vertex_gemini": ("vertex_ai/gemini-2.5-flash", "vertex", {}),
    "vertex_claude": (f"vertex_ai/{VERTEX_CLAUDE}", "vertex", {}),
    "mock": ("mock/mock-model", None, {"mock_response": MOCKED}),
}
NO_CACHE_REPORTED = {"cohere", "mock"}
LEGACY_PASSTHROUGH = {"openai", "groq", "azure"}  # serve /completions themselves (the legacy mock)

NOT_TESTED: dict[tuple[str, str, str], str] = {}
for _p in PROVIDERS:
    NOT_TESTED["completions", _p, "tools"] = "the legacy completions API has no tools"
    NOT_TESTED["completions", _p, "system"] = "the legacy API has no system prompt"
for _d in DOORS:
    NOT_TESTED[_d, "mock", "tools"] = "the in-process mock provider never calls tools"
    NOT_TESTED[_d, "mock", "errors"] = "the mock provider has no error triggers"
    NOT_TESTED[_d, "mock", "system"] = "no upstream request to inspect"


def pairs(behaviour: str) -> list:
    return [pytest.param(d, p, id=f"{d}-{p}") for d in DOORS for p in PROVIDERS
            if (d, p, behaviour) not in NOT_TESTED]


# ---------------------------------------------------------------- one gateway, every mock


def _openai_app(recorder):  # noqa: ANN001, ANN202
    """OpenAI: chat, embeddings and Responses (the Responses mock) plus legacy /v1/completions."""
    app = openai_responses_api.create_app(recorder)
    for route in azure_api.create_legacy_app(recorder).router.routes():
        app.router.add_route(route.method, route.resource.canonical, route.handler)
    return app


@pytest.fixture(scope="module")
def servers():
    host = MockHost()
    state = vertex_api.TokenState()
    out = {name: host.start(name, factory) for name, factory in {
        "openai": _openai_app, "anthropic": anthropic_api.create_app, "gemini": gemini_api.create_app,
        "azure": azure_api.create_app, "azure_ai": azure_api.create_ai_app, "cohere": cohere_api.create_app,
        "bedrock": bedrock_api.create_app, "vertex": vertex_api.app_factory(state)}.items()}
    out["vertex"].state = state  # type: ignore[attr-defined]
    yield out
    host.stop()


def _api_base(name: str, servers) -> str:  # noqa: ANN001
    url = servers[name].url
    return {"openai": url + "/v1", "azure_ai": url + "/models"}.get(name, url)


@pytest.fixture(scope="module")
def gw(servers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conformance")
    account = tmp / "vertex-sa.json"
    account.write_text(json.dumps(_service_account(servers["vertex"].state, "conf", servers["vertex"].url + "/token")))
    secrets = {
        "bedrock": {"aws_access_key_id": bedrock_api.ACCESS_KEY_ID, "aws_secret_access_key": bedrock_api.SECRET_KEY,
                    "aws_region_name": bedrock_api.REGION},
        "vertex": {"vertex_credentials": str(account), "vertex_location": "us-east5"},
    }
    model_list = []
    for name, (model, server, extra) in PROVIDERS.items():
        params = {"model": model, **extra, **secrets.get(server or "", {})}
        if server:
            params["api_base"] = _api_base(server, servers)
        model_list.append({"model_name": name, "litellm_params": params})
    config = {"model_list": model_list, "general_settings": {"master_key": MASTER_KEY},
              "router_settings": {"disable_cooldowns": True, "num_retries": 0}}
    running = start_gateway(config, tmp, {"GOOGLE_APPLICATION_CREDENTIALS": "", "AWS_EC2_METADATA_DISABLED": "true"})
    yield running
    running.process.terminate()
    running.process.wait(10)


@pytest.fixture(scope="module")
def doors(gw):
    return {name: door(gw.url, MASTER_KEY) for name, door in DOORS.items()}


def sent(servers, provider: str):  # noqa: ANN001, ANN201
    """The last model request the provider's mock received (token fetches left out)."""
    server = PROVIDERS[provider][1]
    return next(r for r in reversed(servers[server].recorder.requests) if r.path != "/token")


def system_text(body: dict) -> str | None:
    """The system prompt in whatever shape the provider's wire format carries it."""
    def text_of(value) -> str:  # noqa: ANN001
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            return "".join(p.get("text", "") for p in value.get("parts") or [])
        return "".join(p.get("text", "") for p in value or [] if isinstance(p, dict))

    for key in ("instructions", "system", "systemInstruction"):  # Responses, Anthropic/Bedrock, Gemini
        if body.get(key):
            return text_of(body[key])
    first = (body.get("messages") or [{}])[0]  # OpenAI chat family, Cohere
    return text_of(first.get("content")) if first.get("role") in ("system", "developer") else None


def expected_text(door: str, provider: str) -> str:
    if provider == "mock":
        return MOCKED
    if door == "completions" and provider in LEGACY_PASSTHROUGH:
        return azure_api.LEGACY_TEXT
    return MOCK_TEXT


# ---------------------------------------------------------------- the matrix


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("door,provider", pairs("text"))
def test_text_stop_reason_usage_and_system_prompt(doors, servers, door, provider, stream):
    answer = doors[door].ask_text(provider, stream)
    assert answer.text == expected_text(door, provider)
    assert answer.finish == TEXT_FINISH[door]
    assert answer.usage is not None, "no usage reported"
    prompt, completion, cached = answer.usage
    if provider == "mock":
        assert prompt > 0 and completion > 0
        return
    assert (prompt, completion) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    if provider not in NO_CACHE_REPORTED and door != "completions":
        assert cached == CACHED_TOKENS
    body = sent(servers, provider).body
    if (door, provider, "system") in NOT_TESTED:
        assert "hello" in json.dumps(body)  # the prompt itself reached the provider
    else:
        assert system_text(body) == SYSTEM


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("door,provider", pairs("tools"))
def test_tool_call_and_result_round_trip(doors, servers, door, provider, stream):
    trip = doors[door].ask_tool_round_trip(provider, stream)
    assert trip.name == "get_weather"
    assert trip.args == {"city": "Paris"}
    assert trip.finish == TOOL_FINISH[door]
    assert trip.answer == MOCK_TEXT
    assert TOOL_RESULT in json.dumps(sent(servers, provider).body), "the tool result did not reach the provider"


# the client's own error class and shape, per door
ERROR_CLASSES = {
    "chat": {429: openai.RateLimitError, 400: openai.BadRequestError},
    "responses": {429: openai.RateLimitError, 400: openai.BadRequestError},
    "completions": {429: openai.RateLimitError, 400: openai.BadRequestError},
    "messages": {429: anthropic.RateLimitError, 400: anthropic.BadRequestError},
    "gemini": {429: genai_errors.ClientError, 400: genai_errors.ClientError},
}
GOOGLE_STATUS = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT"}
ANTHROPIC_TYPE = {429: "rate_limit_error", 400: "invalid_request_error"}


def check_error_shape(door: str, status: int, body) -> None:  # noqa: ANN001
    if door == "messages":
        assert body["type"] == "error" and body["error"]["type"] == ANTHROPIC_TYPE[status] and body["error"]["message"]
    elif door == "gemini":
        assert body["error"]["code"] == status and body["error"]["status"] == GOOGLE_STATUS[status]
        assert body["error"]["message"]
    else:  # OpenAI's {"error": {"message", ...}} (Azure's passthrough body has "code" where OpenAI has "type")
        assert body["error"]["message"] and ("type" in body["error"] or "code" in body["error"])


@pytest.mark.parametrize("status", [429, 400])
@pytest.mark.parametrize("door,provider", pairs("errors"))
def test_upstream_error_in_the_clients_shape(doors, door, provider, status):
    failure = doors[door].ask_error(provider, f"TRIGGER_{status} please")
    assert failure.status == status
    assert failure.error is ERROR_CLASSES[door][status]
    check_error_shape(door, status, failure.body)

