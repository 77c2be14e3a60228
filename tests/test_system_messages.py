"""End to end with the official SDKs: mid-conversation system messages and the rest of what
Claude Code sends, through a real gateway to the OpenAI, Gemini and Anthropic mocks."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from tests.mocks import MOCK_TEXT

REMINDER = "<system-reminder>\n{}\n</system-reminder>"
LONG_USER_ID = json.dumps({"device_id": "f" * 64, "account_uuid": "", "session_id": "s-1"})


def conversation() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Hello there"},
        {"role": "system", "content": [{"type": "text", "text": "# Environment\ncwd: /tmp"}]},
        {"role": "assistant", "content": "Hi."},
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "How are you?"},
    ]


def _last(mocks, name: str):
    return mocks[name].recorder.last


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_client_to_openai_system_messages_in_place(anthropic_client, mocks, stream: bool) -> None:
    kwargs = {"model": "openai-model", "max_tokens": 32000, "system": "Top system.", "messages": conversation(),
              "metadata": {"user_id": LONG_USER_ID}, "stop_sequences": ["</done>"]}
    if stream:
        with anthropic_client.messages.stream(**kwargs) as s:
            text = s.get_final_text()
    else:
        text = anthropic_client.messages.create(**kwargs).content[0].text
    assert text == MOCK_TEXT
    body = _last(mocks, "openai").body
    assert [(m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
            for m in body["messages"]] == [
        ("system", "Top system."), ("user", "Hello there"), ("system", "# Environment\ncwd: /tmp"),
        ("assistant", "Hi."), ("system", "Answer briefly."), ("user", "How are you?"),
    ]
    assert body["max_tokens"] == 16384  # gpt-4o-mini's ceiling (the mock refuses more, as OpenAI does)
    assert body["stop"] == ["</done>"]
    assert len(body["user"]) <= 64


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_client_to_gemini_system_messages_folded(anthropic_client, mocks, stream: bool) -> None:
    kwargs = {"model": "gemini-model", "max_tokens": 1000, "system": "Top system.", "messages": conversation()}
    if stream:
        with anthropic_client.messages.stream(**kwargs) as s:
            text = s.get_final_text()
    else:
        text = anthropic_client.messages.create(**kwargs).content[0].text
    assert text == MOCK_TEXT
    body = _last(mocks, "gemini").body
    assert body["systemInstruction"] == {"parts": [{"text": "Top system."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hello there"}, {"text": REMINDER.format("# Environment\ncwd: /tmp")}]},
        {"role": "model", "parts": [{"text": "Hi."}]},
        {"role": "user", "parts": [{"text": REMINDER.format("Answer briefly.")}, {"text": "How are you?"}]},
    ]


def test_anthropic_passthrough_forwards_system_messages_as_sent(anthropic_client, mocks) -> None:
    msgs = conversation()
    msg = anthropic_client.messages.create(model="claude-model", max_tokens=100, messages=msgs)
    assert msg.content[0].text == MOCK_TEXT
    assert _last(mocks, "anthropic").body["messages"] == msgs


def test_openai_client_later_system_messages_reach_anthropic_in_order(openai_client, mocks) -> None:
    resp = openai_client.chat.completions.create(model="claude-model", max_tokens=100, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Now answer in French."},
        {"role": "user", "content": "how are you?"},
    ])
    assert resp.choices[0].message.content == MOCK_TEXT
    body = _last(mocks, "anthropic").body
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": REMINDER.format("Now answer in French.")},
                                     {"type": "text", "text": "how are you?"}]},
    ]


@pytest.mark.parametrize("model", ["openai-model", "gemini-model", "claude-model"])
def test_beta_query_and_header(anthropic_client, mocks, model: str) -> None:
    """``client.beta.messages`` sends ``?beta=true`` and ``anthropic-beta``, as Claude Code does."""
    msg = anthropic_client.beta.messages.create(
        model=model, max_tokens=100, betas=["interleaved-thinking-2025-05-14"],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
                  {"role": "system", "content": "Be brief."}],
    )
    assert msg.content[0].text == MOCK_TEXT
    if model == "claude-model":
        assert _last(mocks, "anthropic").headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


@pytest.mark.parametrize("model", ["openai-model", "gemini-model"])
def test_count_tokens_with_system_messages_and_tools(anthropic_client, model: str) -> None:
    count = anthropic_client.messages.count_tokens(
        model=model, system="Top.", messages=conversation(),
        tools=[{"name": "Read", "description": "Reads a file",
                "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
    )
    assert count.input_tokens > 0


@pytest.mark.parametrize("model", ["openai-model", "gemini-model", "claude-model"])
def test_tool_results_string_blocks_and_errors(anthropic_client, mocks, model: str) -> None:
    msg = anthropic_client.messages.create(model=model, max_tokens=100, messages=[
        {"role": "user", "content": "Read both files"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Two reads.", "signature": "sig-abc"},
            {"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {"file_path": "/a"}},
            {"type": "tool_use", "id": "toolu_b", "name": "Read", "input": {"file_path": "/b"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "alpha"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "is_error": True,
             "content": [{"type": "text", "text": "No such file."}]},
            {"type": "text", "text": REMINDER.format("tokens left")}]},
        {"role": "system", "content": "Summarize."},
    ], tools=[{"name": "Read", "description": "Reads a file",
               "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}])
    assert msg.content[0].type == "text"
    body = _last(mocks, {"openai-model": "openai", "gemini-model": "gemini", "claude-model": "anthropic"}[model]).body
    if model == "openai-model":
        tools = [m for m in body["messages"] if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tools] == ["toolu_a", "toolu_b"]
        assert tools[1]["content"][0]["text"] == "Error: "
        assert body["messages"][-1] == {"role": "system", "content": "Summarize."}
    elif model == "gemini-model":
        model_turn = body["contents"][1]["parts"]
        assert model_turn[0].get("thoughtSignature") == "sig-abc"
        responses = [p["functionResponse"] for p in body["contents"][2]["parts"] if "functionResponse" in p]
        assert [r["response"] for r in responses] == [{"result": "alpha"}, {"error": "No such file."}]
        assert body["contents"][2]["parts"][-1] == {"text": REMINDER.format("Summarize.")}
    else:
        assert body["messages"][-1] == {"role": "system", "content": "Summarize."}  # passthrough


def test_bad_system_message_is_a_400_in_anthropic_shape(anthropic_client) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        anthropic_client.messages.create(model="openai-model", max_tokens=10, messages=[
            {"role": "user", "content": "hi"}, {"role": "system", "content": [{"type": "image", "source": {}}]}])
    assert "messages[1].content" in str(exc.value)
