"""Offline token counting: the bundled tiktoken files, ``/v1/messages/count_tokens`` for OpenAI
(tiktoken, "estimated") and Gemini (the provider's countTokens, "exact") deployments, and the
prompt estimate used for accounting when a provider reports no usage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import anthropic
import openai
import pytest
from aiohttp import web

from lockgate import tokens
from tests.conftest import MASTER_KEY, MockHost, free_port, start_gateway
from tests.mocks import MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS, Received, Recorder, gemini_api

OFFLINE_SCRIPT = """
from lockgate import tokens
print(tokens.encoding("cl100k_base").encode("hello world"), tokens.encoding("o200k_base").encode("hello world"))
"""


def _offline_command() -> tuple[list[str], dict[str, str]]:
    """``unshare -n`` (no network at all) when permitted, else proxies pointing at a closed port."""
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True) if shutil.which("unshare") else None
    if probe is not None and probe.returncode == 0:
        return ["unshare", "-n", sys.executable, "-c", OFFLINE_SCRIPT], env
    closed = f"http://127.0.0.1:{free_port()}"
    env.update(HTTP_PROXY=closed, HTTPS_PROXY=closed, http_proxy=closed, https_proxy=closed)
    return [sys.executable, "-c", OFFLINE_SCRIPT], env


def test_bundled_encodings_load_without_network(tmp_path):
    command, env = _offline_command()
    env["TMPDIR"] = str(tmp_path)  # tiktoken's own default cache lives under the temp dir: keep it empty
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[15339, 1917] [24912, 2375]"
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded into a cache


def test_encoding_choice_and_prompt_count():
    assert tokens.encoding_name("gpt-4o-mini") == tokens.encoding_name("openai/gpt-5") == "o200k_base"
    assert tokens.encoding_name("o3-mini") == tokens.encoding_name("gpt-4.1") == "o200k_base"
    assert tokens.encoding_name("gpt-4-turbo") == tokens.encoding_name("claude-sonnet-4-5") == "cl100k_base"
    # OpenAI's chat format: 3 per message + the role + the text, and 3 to prime the reply
    assert tokens.count_prompt_tokens({"messages": [{"role": "user", "content": "hello world"}]}, "gpt-4o") == 9
    anthropic_body = {"system": "hello world", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hello world"}, {"type": "image", "source": {}}]}]}
    assert tokens.count_prompt_tokens(anthropic_body, "gpt-4o") == (3 + 1 + 2) * 2 + 3 + tokens.IMAGE_TOKENS
    with_tools = {**anthropic_body, "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}
    assert tokens.count_prompt_tokens(with_tools, "gpt-4o") > tokens.count_prompt_tokens(anthropic_body, "gpt-4o")


# ---------------------------------------------------------------- through the gateway


def _openai_without_usage(recorder: Recorder) -> web.Application:
    """An OpenAI-compatible server that never reports usage (some self-hosted servers don't)."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        recorder.requests.append(Received(request.path, dict(request.query), dict(request.headers), body))
        base = {"id": "chatcmpl-" + uuid.uuid4().hex, "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": MOCK_TEXT}, "finish_reason": "stop"}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for delta, finish in (({"role": "assistant", "content": MOCK_TEXT}, None), ({}, "stop")):
            chunk = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture(scope="module")
def servers():
    host = MockHost()
    yield {"gemini": host.start("gemini", gemini_api.create_app),
           "bare": host.start("bare", _openai_without_usage)}
    host.stop()


@pytest.fixture(scope="module")
def gw(servers, tmp_path_factory):
    config = {
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_key": MOCK_API_KEY,
                                                     "api_base": servers["bare"].url + "/v1"}},
            {"model_name": "gem", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_key": MOCK_API_KEY,
                                                     "api_base": servers["gemini"].url}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("tokens"))
    yield gateway
    gateway.process.terminate()
    gateway.process.wait(10)


@pytest.fixture(scope="module")
def an(gw):
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def test_count_tokens_openai_deployment_uses_tiktoken(an):
    raw = an.messages.with_raw_response.count_tokens(
        model="gpt", messages=[{"role": "user", "content": "hello world"}])
    assert raw.headers["x-lockgate-token-count"] == "estimated"
    assert raw.parse().input_tokens == 9


def test_count_tokens_gemini_deployment_asks_gemini(an, servers):
    raw = an.messages.with_raw_response.count_tokens(
        model="gem", system="be brief", messages=[{"role": "user", "content": "hello world"}])
    assert raw.headers["x-lockgate-token-count"] == "exact"
    assert raw.parse().input_tokens == PROMPT_TOKENS
    sent = servers["gemini"].recorder.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    inner = sent.body["generateContentRequest"]
    assert inner["model"] == "models/gemini-2.5-flash"
    assert inner["contents"] == [{"role": "user", "parts": [{"text": "hello world"}]}]
    assert inner["systemInstruction"]["parts"][0]["text"] == "be brief"


@pytest.mark.parametrize("stream", [False, True])
def test_missing_provider_usage_is_estimated_for_accounting(gw, stream):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    resp = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hello world"}],
                                          stream=stream)
    text = "".join(c.choices[0].delta.content or "" for c in resp if c.choices) if stream else \
        resp.choices[0].message.content
    assert text == MOCK_TEXT
    records = [json.loads(line) for line in gw.log().splitlines() if line.startswith('{"request_id"')]
    last = [r for r in records if r["model"] == "gpt" and r["stream"] is stream][-1]
    assert (last["prompt_tokens"], last["completion_tokens"]) == (9, 0)
