"""Size limits: request bodies (general_settings.max_request_size_mb, 413 in the client's dialect, also
from Content-Length before anything is read), management bodies (read only after authentication) and
provider answers (general_settings.max_response_size_mb: 502; for streams, one event)."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import httpx
import pytest

from lockgate.errors import is_error_body
from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import MOCK_API_KEY

H = {"authorization": "Bearer " + MASTER_KEY}
MB = 1024 * 1024
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from tests.mocks import anthropic_api, faulty_api, gemini_api, openai_api

    host = MockHost()
    openai_mock = host.start("openai", openai_api.create_app)
    claude = host.start("anthropic", anthropic_api.create_app)
    gemini = host.start("gemini", gemini_api.create_app)
    broken = host.start("broken", faulty_api.create_broken_app)
    config = {
        "model_list": [
            {"model_name": "gpt", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": openai_mock.url + "/v1", "api_key": MOCK_API_KEY}},
            {"model_name": "claude", "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5", "api_base": claude.url, "api_key": MOCK_API_KEY}},
            {"model_name": "gem", "litellm_params": {
                "model": "gemini/gemini-2.5-flash", "api_base": gemini.url, "api_key": MOCK_API_KEY}},
            {"model_name": "huge", "litellm_params": {  # answers 2 MB
                "model": "openai/gpt-4o", "api_base": broken.url + "/huge/v1", "api_key": MOCK_API_KEY}},
            {"model_name": "huge-event", "litellm_params": {  # streams one 2 MB event
                "model": "openai/gpt-4o", "api_base": broken.url + "/hugeevent/v1", "api_key": MOCK_API_KEY}},
        ],
        "general_settings": {"master_key": MASTER_KEY, "max_request_size_mb": 1, "max_response_size_mb": 1},
        "router_settings": {"disable_cooldowns": True},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("size-limits"))
    yield gateway
    gateway.process.terminate()
    gateway.process.wait(10)
    host.stop()


def padded(body: dict, size: int) -> dict:
    return {**body, "metadata": {"pad": "x" * size}}


DOORS = [
    ("/v1/chat/completions", {"model": "gpt", "messages": HI}, "openai"),
    ("/v1/messages", {"model": "claude", "max_tokens": 5, "messages": HI}, "anthropic"),
    ("/v1/messages/count_tokens", {"model": "claude", "messages": HI}, "anthropic"),
    ("/v1/responses", {"model": "gpt", "input": "hi"}, "openai"),
    ("/v1/completions", {"model": "gpt", "prompt": "hi"}, "openai"),
    ("/v1/embeddings", {"model": "gpt", "input": "hi"}, "openai"),
    ("/v1beta/models/gem:generateContent", {"contents": [{"parts": [{"text": "hi"}]}]}, "google"),
    ("/v1beta/models/gem:streamGenerateContent?alt=sse", {"contents": [{"parts": [{"text": "hi"}]}]}, "google"),
    ("/v1beta/models/gem:countTokens", {"contents": [{"parts": [{"text": "hi"}]}]}, "google"),
]


@pytest.mark.parametrize("path, body, shape", DOORS)
def test_a_body_over_the_limit_is_413_in_the_door_dialect(gw, path, body, shape):
    resp = httpx.post(gw.url + path, headers=H, json=padded(body, 2 * MB), timeout=20)
    assert resp.status_code == 413, resp.text
    assert is_error_body(shape, resp.content), resp.text
    assert "max_request_size_mb" in resp.text
    if shape == "anthropic":
        assert resp.json()["error"]["type"] == "request_too_large"


def test_a_chunked_body_is_counted_while_it_arrives(gw):
    import orjson

    payload = orjson.dumps(padded({"model": "gpt", "messages": HI}, 2 * MB))

    def chunks():
        for i in range(0, len(payload), 64 * 1024):
            yield payload[i:i + 64 * 1024]

    resp = httpx.post(gw.url + "/v1/chat/completions", headers=H, content=chunks(), timeout=20)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
    ok = httpx.post(gw.url + "/v1/chat/completions", headers=H, json=padded({"model": "gpt", "messages": HI}, MB // 2))
    assert ok.status_code == 200  # under the limit: served


def raw_post(url: str, path: str, headers: dict[str, str], declared: int, sent: bytes) -> tuple[int, bytes, float]:
    """POST declaring ``declared`` bytes but sending only ``sent``: the answer must come anyway."""
    where = urlparse(url)
    started = time.monotonic()
    with socket.create_connection((where.hostname, where.port), timeout=5) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {where.hostname}", "Content-Type: application/json",
                f"Content-Length: {declared}", *[f"{k}: {v}" for k, v in headers.items()], "", ""]
        sock.sendall("\r\n".join(head).encode() + sent)
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith((b"\r\n0\r\n\r\n", b"}")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[1], time.monotonic() - started


def test_content_length_over_the_limit_is_refused_before_reading(gw):
    status, body, seconds = raw_post(gw.url, "/v1/chat/completions", H, 100 * MB, b'{"model": "gpt"')
    assert status == 413 and b"request_too_large" in body and seconds < 3
    status, body, _ = raw_post(gw.url, "/v1beta/models/gem:generateContent", H, 100 * MB, b"{")
    assert status == 413 and b'"code":413' in body


def test_management_bodies_are_read_after_authentication_and_bounded(gw):
    # an unknown caller announcing 100 MB gets its 401 at once: its body is never read
    status, body, seconds = raw_post(gw.url, "/key/generate", {"authorization": "Bearer sk-nobody"}, 100 * MB, b"{")
    assert status == 401 and b"invalid API key" in body and seconds < 3
    status, body, _ = raw_post(gw.url, "/key/generate", {}, 100 * MB, b"{")
    assert status == 401
    # an admin is bounded too (1 MB for management bodies)
    status, body, _ = raw_post(gw.url, "/key/generate", H, 100 * MB, b"{")
    assert status == 413 and b"request_too_large" in body
    big = httpx.post(gw.url + "/key/generate", headers=H, json={"metadata": {"pad": "x" * (2 * MB)}}, timeout=20)
    assert big.status_code == 413
    ok = httpx.post(gw.url + "/key/generate", headers=H, json={"key_alias": "small"}, timeout=20)
    assert ok.status_code == 200 and ok.json()["key"].startswith("sk-")


def test_an_answer_over_the_limit_is_a_502_in_the_client_dialect(gw):
    resp = httpx.post(gw.url + "/v1/chat/completions", headers=H, json={"model": "huge", "messages": HI}, timeout=20)
    assert resp.status_code == 502 and is_error_body("openai", resp.content)
    assert resp.json()["error"]["code"] == "upstream_response_too_large"
    assert "max_response_size_mb" in resp.text
    resp = httpx.post(gw.url + "/v1/messages", headers=H, timeout=20,
                      json={"model": "huge", "max_tokens": 5, "messages": HI})
    assert resp.status_code == 502 and is_error_body("anthropic", resp.content)


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "huge-event", "messages": HI, "stream": True}),  # passthrough
    ("/v1/messages", {"model": "huge-event", "max_tokens": 5, "messages": HI, "stream": True}),  # translated
])
def test_a_stream_event_over_the_limit_ends_the_stream_with_an_error(gw, path, body):
    resp = httpx.post(gw.url + path, headers=H, json=body, timeout=30)
    assert "max_response_size_mb" in resp.text
    assert len(resp.content) < MB  # the oversized event never reached the client
    if resp.status_code == 200:
        assert "error" in resp.text.rsplit("data:", 1)[-1]
    else:
        assert resp.status_code == 502
    assert httpx.get(gw.url + "/health/liveliness").status_code == 200


def test_size_settings_and_their_defaults():
    from lockgate import config

    default = config.from_dict({"model_list": []})
    assert default.max_request_body == 32 * MB and default.max_response_body == 64 * MB
    assert not default.warnings
    mine = config.from_dict({"general_settings": {"max_request_size_mb": 0.5, "max_response_size_mb": 128}})
    assert mine.max_request_body == MB // 2 and mine.max_response_body == 128 * MB and not mine.warnings
    older = config.from_dict({"lockgate_settings": {"max_request_body_mb": 8}})
    assert older.max_request_body == 8 * MB
    both = config.from_dict({"general_settings": {"max_request_size_mb": 4}, "lockgate_settings": {"max_request_body_mb": 8}})
    assert both.max_request_body == 4 * MB
    for bad in ("big", 0, -1):
        with pytest.raises(config.ConfigError, match="max_request_size_mb"):
            config.from_dict({"general_settings": {"max_request_size_mb": bad}})


def test_sdks_see_413_and_502(gw):
    import anthropic
    import openai
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types

    big = "x" * (2 * MB)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": big}])
    assert info.value.status_code == 413 and info.value.body["code"] == "request_too_large"
    with pytest.raises(openai.InternalServerError) as info2:
        client.chat.completions.create(model="huge", messages=HI)
    assert info2.value.status_code == 502 and info2.value.body["code"] == "upstream_response_too_large"
    claude = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info3:
        claude.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": big}])
    assert info3.value.status_code == 413 and info3.value.body["error"]["type"] == "request_too_large"
    gemini = genai.Client(api_key=MASTER_KEY, http_options=types.HttpOptions(base_url=gw.url))
    with pytest.raises(genai_errors.ClientError) as info4:
        gemini.models.generate_content(model="gem", contents=big)
    assert info4.value.code == 413
