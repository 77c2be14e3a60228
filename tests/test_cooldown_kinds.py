"""What counts against a deployment: the client's own 400/413/422 never; 401/403/404, 408, 429, 5xx,
timeouts and unreachable providers do (LiteLLM's rules for allowed_fails and cooldowns).

Cooldowns are on (``allowed_fails: 1``, 60 s), so a single counted failure takes a deployment out.
"""

from __future__ import annotations

import httpx
import pytest

from lockgate.errors import LockgateError, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from lockgate.routing.retry import counts_against_deployment, failure_kind
from tests.conftest import MASTER_KEY, MockHost, free_port, start_gateway
from tests.mocks import MOCK_API_KEY

H = {"authorization": "Bearer " + MASTER_KEY}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from tests.mocks import anthropic_api, faulty_api, gemini_api, openai_responses_api

    host = MockHost()
    faulty = host.start("faulty", faulty_api.create_app)
    broken = host.start("broken", faulty_api.create_broken_app)
    openai_mock = host.start("openai", openai_responses_api.create_app)
    claude = host.start("anthropic", anthropic_api.create_app)
    gemini = host.start("gemini", gemini_api.create_app)

    def faulty_dep(name: str, mode: str) -> dict:
        return {"model_name": name, "litellm_params": {
            "model": "openai/gpt-4o", "api_base": f"{faulty.url}/{name}/{mode}/v1", "api_key": MOCK_API_KEY}}

    config = {
        "model_list": [
            {"model_name": "gpt-mock", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": openai_mock.url + "/v1", "api_key": MOCK_API_KEY}},
            {"model_name": "claude-mock", "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5", "api_base": claude.url, "api_key": MOCK_API_KEY}},
            {"model_name": "gemini-mock", "litellm_params": {
                "model": "gemini/gemini-2.5-flash", "api_base": gemini.url, "api_key": MOCK_API_KEY}},
            {"model_name": "gemini-bad-key", "litellm_params": {
                "model": "gemini/gemini-2.5-flash", "api_base": gemini.url, "api_key": "not-the-key"}},
            faulty_dep("picky", "picky"),
            faulty_dep("limited", "429"),
            faulty_dep("crashing", "500"),
            {"model_name": "plain-text-500", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": f"{broken.url}/text500/v1", "api_key": MOCK_API_KEY}},
            {"model_name": "html-404", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": f"{broken.url}/html404/v1", "api_key": MOCK_API_KEY}},
            {"model_name": "nowhere", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": f"http://127.0.0.1:{free_port()}/v1", "api_key": "k"}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "router_settings": {"allowed_fails": 1, "cooldown_time": 60},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("cooldown-kinds"))
    yield gateway
    gateway.process.terminate()
    gateway.process.wait(10)
    host.stop()


def chat(gw, model: str, content, stream: bool = False) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers=H, timeout=20,
                      json={"model": model, "messages": [{"role": "user", "content": content}], "stream": stream})


def cooling(resp: httpx.Response) -> bool:
    return resp.status_code == 429 and "cooling down" in resp.text


def test_a_burst_of_malformed_bodies_leaves_every_door_serving(gw):
    """The issue's case: one client's malformed bodies made 'every deployment of gpt-mock cooling down'."""
    bad = [
        ("/v1/chat/completions", {"model": "gpt-mock", "messages": [{"role": "user", "content": [1, 2]}]}),
        ("/v1/chat/completions", {"model": "gpt-mock", "messages": [1], "stream": True}),
        ("/v1/responses", {"model": "gpt-mock", "input": [{"role": "user", "content": [3]}]}),
        ("/v1/responses", {"model": "gpt-mock", "input": [7], "stream": True}),
        ("/v1/messages", {"model": "claude-mock", "max_tokens": 5, "messages": [1]}),
        ("/v1/messages", {"model": "claude-mock", "max_tokens": 5, "messages": [[]], "stream": True}),
        ("/v1beta/models/gemini-mock:generateContent", {"contents": [{"role": "user", "parts": 5}]}),
    ]
    for _ in range(3):
        for path, body in bad:
            resp = httpx.post(gw.url + path, headers=H, json=body, timeout=20)
            assert resp.status_code == 400, (path, resp.status_code, resp.text)
    assert chat(gw, "gpt-mock", "hello").status_code == 200
    assert httpx.post(gw.url + "/v1/responses", headers=H, json={"model": "gpt-mock", "input": "hi"}).status_code == 200
    assert httpx.post(gw.url + "/v1/messages", headers=H, timeout=20, json={
        "model": "claude-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    assert httpx.post(gw.url + "/v1beta/models/gemini-mock:generateContent", headers=H, timeout=20, json={
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).status_code == 200


def test_400_413_422_from_the_provider_do_not_cool_the_deployment(gw):
    for _ in range(4):
        for status in (400, 413, 422):
            assert chat(gw, "picky", f"BAD{status}").status_code == status
            assert chat(gw, "picky", f"BAD{status}", stream=True).status_code == status
    good = chat(gw, "picky", "a good question")
    assert good.status_code == 200 and "answer from picky" in good.text
    metrics = httpx.get(gw.url + "/metrics").text
    assert not [line for line in metrics.splitlines()
                if line.startswith("lockgate_deployment_cooldown") and line.endswith(" 1.0")]


@pytest.mark.parametrize("model, first_status", [("limited", 429), ("crashing", 502), ("plain-text-500", 502),
                                                 ("html-404", 404), ("nowhere", 502), ("gemini-bad-key", 400)])
def test_deployment_failures_still_cool_it_down(gw, model, first_status):
    first = chat(gw, model, "hello")
    assert first.status_code == first_status, first.text
    assert cooling(chat(gw, model, "hello")), model


def test_which_failures_count():
    def upstream(status: int, message: str = "x", type_: str | None = None) -> UpstreamError:
        err = UpstreamError(message, status=502 if status >= 500 else status, type=type_)
        err.upstream_status = status
        return err

    for status in (400, 413, 422):
        err = upstream(status)
        assert not counts_against_deployment(err, failure_kind(err)), status
    context = upstream(400, "This model's maximum context length is 8192 tokens")
    assert not counts_against_deployment(context, failure_kind(context))
    for status in (401, 403, 404, 408, 429, 500, 502, 503, 504, 529):
        err = upstream(status)
        assert counts_against_deployment(err, failure_kind(err)), status
    key = upstream(400, "API key not valid. Please pass a valid API key.", "authentication_error")
    assert failure_kind(key) == "auth" and counts_against_deployment(key, "auth")
    for err in (UpstreamTimeout("slow"), UpstreamUnreachable("gone")):
        assert counts_against_deployment(err, failure_kind(err))
    assert failure_kind(upstream(504)) == "timeout"  # the provider's own status, not the 502 the client sees
    assert not counts_against_deployment(LockgateError("x", status=400), "bad_request")
