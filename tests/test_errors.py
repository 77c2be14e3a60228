"""Every error case, in the client's own dialect, with the right status."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.mocks import MOCK_API_KEY

OPENAI_MSG = [{"role": "user", "content": "hi"}]


def post(gateway, path, body, key=MASTER_KEY, raw=None):
    headers = {"authorization": "Bearer " + key} if key else {}
    return httpx.post(gateway.url + path, headers=headers, content=raw if raw is not None else None,
                      json=body if raw is None else None, timeout=20)


def test_bad_key_is_401_in_each_dialect(gateway):
    resp = post(gateway, "/v1/chat/completions", {"model": "openai-model", "messages": OPENAI_MSG}, key="sk-bad")
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    resp = post(gateway, "/v1/messages", {"model": "claude-model", "max_tokens": 5, "messages": OPENAI_MSG},
                key="sk-bad")
    assert resp.status_code == 401
    assert resp.json() == {"type": "error", "error": {"type": "authentication_error", "message": "invalid API key"}}
    assert post(gateway, "/v1/chat/completions", {}, key=None).status_code == 401


def test_sdk_sees_authentication_error(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="openai-model", messages=OPENAI_MSG)
    client = anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="claude-model", max_tokens=5, messages=OPENAI_MSG)


def test_malformed_json_and_missing_fields_name_the_field(gateway):
    resp = post(gateway, "/v1/chat/completions", None, raw=b'{"model": ')
    assert resp.status_code == 400 and "JSON" in resp.json()["error"]["message"]
    resp = post(gateway, "/v1/chat/completions", {"model": "openai-model"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "messages"
    resp = post(gateway, "/v1/chat/completions", {"messages": OPENAI_MSG})
    assert resp.status_code == 400 and "'model'" in resp.json()["error"]["message"]
    resp = post(gateway, "/v1/messages", {"model": "claude-model", "messages": OPENAI_MSG})
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    resp = post(gateway, "/v1/chat/completions", [1, 2])
    assert resp.status_code == 400


def test_unknown_model_lists_nothing_secret(gateway):
    resp = post(gateway, "/v1/chat/completions", {"model": "no-such-model", "messages": OPENAI_MSG})
    assert resp.status_code == 404
    assert "no-such-model" in resp.json()["error"]["message"]
    assert MOCK_API_KEY not in resp.text and "127.0.0.1" not in resp.text
    resp = post(gateway, "/v1/messages", {"model": "no-such-model", "max_tokens": 5, "messages": OPENAI_MSG})
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"


def test_upstream_429_keeps_status_and_retry_after(openai_client, anthropic_client):
    with pytest.raises(openai.RateLimitError) as info:
        openai_client.chat.completions.create(model="openai-model",
                                              messages=[{"role": "user", "content": "TRIGGER_429"}])
    assert info.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.RateLimitError) as info2:
        anthropic_client.messages.create(model="openai-model", max_tokens=5,
                                         messages=[{"role": "user", "content": "TRIGGER_429"}])
    assert info2.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize("model", ["openai-model", "claude-model", "gemini-model"])
def test_upstream_5xx_is_502_and_4xx_keeps_its_status_in_both_dialects(openai_client, anthropic_client, model):
    with pytest.raises(openai.InternalServerError) as info:
        openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "TRIGGER_500"}])
    assert info.value.status_code == 502
    assert info.value.response.headers["x-lockgate-upstream-status"] == "500"
    assert "answered 500" in info.value.body["message"]
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client.messages.create(model=model, max_tokens=5,
                                         messages=[{"role": "user", "content": "TRIGGER_400"}])


def test_upstream_unreachable_is_502_and_timeout_is_504(gateway, openai_client):
    resp = post(gateway, "/v1/chat/completions", {"model": "unreachable-model", "messages": OPENAI_MSG})
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_unreachable"
    resp = post(gateway, "/v1/chat/completions",
                {"model": "timeout-model", "messages": [{"role": "user", "content": "TRIGGER_SLOW"}]})
    assert resp.status_code == 504
    resp = post(gateway, "/v1/messages",
                {"model": "timeout-model", "max_tokens": 5, "messages": [{"role": "user", "content": "TRIGGER_SLOW"}]})
    assert resp.status_code == 504 and resp.json()["type"] == "error"


def test_stream_error_after_start_ends_with_an_error_event(gateway):
    with httpx.stream("POST", gateway.url + "/v1/chat/completions",
                      headers={"authorization": "Bearer " + MASTER_KEY},
                      json={"model": "timeout-model", "stream": True,
                            "messages": [{"role": "user", "content": "TRIGGER_SLOW"}]}, timeout=20) as resp:
        body = resp.read().decode()
    assert resp.status_code in (200, 504)
    assert "error" in body


def test_provider_auth_failure_is_reported_without_leaking_keys(gateway):
    resp = post(gateway, "/v1/chat/completions", {"model": "wrong-key-model", "messages": OPENAI_MSG})
    assert resp.status_code == 401
    assert MASTER_KEY not in resp.text


def test_unknown_route_is_404_json(gateway):
    resp = httpx.get(gateway.url + "/v1/nothing-here")
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"


def test_no_secret_in_the_log(gateway, openai_client):
    openai_client.chat.completions.create(model="openai-model", messages=[{"role": "user", "content": "secret?"}])
    post(gateway, "/v1/chat/completions", {"model": "openai-model", "messages": OPENAI_MSG}, key="sk-attacker-guess")
    log = gateway.log()
    for secret in (MASTER_KEY, MOCK_API_KEY, "sk-attacker-guess", "sk-wrong", "secret?"):
        assert secret not in log
    assert '"request_id"' in log  # the access log is there
    assert log.count("litellm_settings.success_callback") == 1  # unimplemented keys are reported once


def test_metrics_expose_requests_latency_and_tokens(gateway, openai_client):
    openai_client.chat.completions.create(model="openai-model", messages=OPENAI_MSG)
    text = httpx.get(gateway.url + "/metrics").text
    assert 'lockgate_requests_total{model="openai-model",provider="openai",status="200"}' in text
    for name in ("lockgate_request_duration_seconds_bucket", "lockgate_upstream_duration_seconds_bucket",
                 "lockgate_overhead_seconds_bucket", "lockgate_tokens_total", "lockgate_errors_total"):
        assert name in text


def test_health_endpoints(gateway):
    assert httpx.get(gateway.url + "/health/liveliness").status_code == 200
    assert httpx.get(gateway.url + "/health/readiness").json()["status"] == "healthy"


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "gemini-model", "messages": OPENAI_MSG, "reasoning_effort": []}),
    ("/v1beta/models/openai-model:generateContent", {"contents": [{"parts": []}], "systemInstruction": True}),
    ("/v1beta/models/openai-model:countTokens", {"contents": False}),
])
def test_a_field_of_the_wrong_type_is_a_400_not_a_crash(gateway, path, body):
    resp = post(gateway, path, body)
    assert resp.status_code == 400, resp.text
    message = resp.json()["error"]["message"]
    assert "wrong type" in message
    assert "Traceback" not in gateway.log()


@pytest.mark.parametrize("model", ["claude-model", "openai-model"])
def test_stream_options_that_are_not_an_object_are_ignored(gateway, model):
    body = {"model": model, "messages": OPENAI_MSG, "stream": True, "stream_options": ["include_usage"]}
    resp = post(gateway, "/v1/chat/completions", body)
    assert resp.status_code == 200 and "[DONE]" in resp.text


@pytest.mark.parametrize("stream", [1, "yes", [True]])
def test_stream_must_be_a_boolean(gateway, stream):
    resp = post(gateway, "/v1/chat/completions", {"model": "openai-model", "messages": OPENAI_MSG, "stream": stream})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "stream"
    assert post(gateway, "/v1/chat/completions",
                {"model": "openai-model", "messages": OPENAI_MSG, "stream": None}).status_code == 200
