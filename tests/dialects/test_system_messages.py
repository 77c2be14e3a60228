"""Mid-conversation system messages (Claude Code's), in place and in order, in every dialect;
and the other parts of a Claude Code request that translation must keep or drop cleanly."""

from __future__ import annotations

import pytest

from lockgate import errors
from lockgate.dialects import anthropic_messages as am
from lockgate.dialects import (
    bedrock_converse,
    cohere_chat,
    gemini,
    openai_chat,
    openai_responses,
    output_limits,
    system_messages,
)

EPHEMERAL = {"type": "ephemeral"}
SCHEMA = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
          "properties": {"file_path": {"type": "string", "description": "absolute path"},
                         "limit": {"type": "integer", "exclusiveMinimum": 0, "maximum": 9007199254740991}},
          "required": ["file_path"], "additionalProperties": False}


def claude_code_body() -> dict:
    """The shape Claude Code 2.1 sends for a model name it does not know (captured from the CLI)."""
    return {
        "model": "gpt-4o",
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "billing header"},
                   {"type": "text", "text": "You are a Claude agent.", "cache_control": EPHEMERAL}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>\nattribution\n</system-reminder>"},
                                         {"type": "text", "text": "Read the file /tmp/a.txt"}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\ncwd: /tmp"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should read it.", "signature": "sig-1"},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/tmp/a.txt"}}]},
            {"role": "system", "content": "Tool results follow."},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "1\tsecret", "cache_control": EPHEMERAL},
                {"type": "text", "text": "<system-reminder>\ntokens left\n</system-reminder>"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"file_path": "/nope"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
                                          "content": [{"type": "text", "text": "File does not exist."}]}]},
        ],
        "tools": [{"name": "Read", "description": "Reads a file", "input_schema": SCHEMA},
                  {"name": "DeferredToolPlaceholder", "description": "d", "defer_loading": True,
                   "input_schema": {"type": "object", "properties": {}}}],
        "metadata": {"user_id": '{"device_id":"' + "f" * 64 + '","account_uuid":"","session_id":"abc"}'},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stop_sequences": ["</done>"],
    }


def canonical() -> dict:
    return am.request_to_canonical(claude_code_body())


def reminder(text: str) -> str:
    return system_messages.OPEN_TAG + text + system_messages.CLOSE_TAG


# ---------------------------------------------------------------- the front door


def test_anthropic_door_accepts_system_messages_in_place() -> None:
    msgs = canonical()["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "system", "assistant", "system", "tool", "user",
                                         "assistant", "tool"]
    assert msgs[2] == {"role": "system", "content": "# Environment\ncwd: /tmp"}
    assert msgs[4] == {"role": "system", "content": "Tool results follow."}
    assert msgs[3]["thinking_blocks"] == [{"type": "thinking", "thinking": "I should read it.", "signature": "sig-1"}]
    assert msgs[8]["is_error"] is True


def test_anthropic_door_keeps_claude_code_knobs_and_drops_the_rest() -> None:
    req = canonical()
    assert req["stop"] == ["</done>"]
    assert req["thinking"] == {"type": "adaptive", "display": "omitted"}
    assert req["user"].startswith('{"device_id"')
    assert "context_management" not in req and "output_config" not in req
    assert [t["function"]["name"] for t in req["tools"]] == ["Read", "DeferredToolPlaceholder"]
    assert "defer_loading" not in req["tools"][1]["function"]


@pytest.mark.parametrize("content", [3, [{"type": "image", "source": {}}], [{"text": "no type"}]])
def test_anthropic_door_refuses_a_system_message_that_is_not_text(content) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
                                                       {"role": "system", "content": content}]}
    with pytest.raises(errors.BadRequest) as exc:
        am.request_to_canonical(body)
    assert exc.value.param == "messages[1].content"


# ---------------------------------------------------------------- targets


def test_openai_chat_keeps_system_messages_where_they_stand() -> None:
    body = openai_chat.request_from_canonical(canonical(), "gpt-4o")
    msgs = body["messages"]
    # the system message between the tool call and its result moved just after the result
    assert [m["role"] for m in msgs] == ["system", "user", "system", "assistant", "tool", "system", "user",
                                         "assistant", "tool"]
    assert msgs[2]["content"] == "# Environment\ncwd: /tmp"
    assert msgs[5]["content"] == "Tool results follow."
    assert all("cache_control" not in p for m in msgs if isinstance(m["content"], list) for p in m["content"])
    assert "thinking_blocks" not in msgs[3] and "is_error" not in msgs[8]
    assert msgs[8]["content"][0] == {"type": "text", "text": "Error: "}
    assert body["stop"] == ["</done>"]
    assert len(body["user"]) <= openai_chat.MAX_USER_LENGTH
    assert body["user"] == openai_chat.request_from_canonical(canonical(), "gpt-4o")["user"]  # stable
    for dropped in ("thinking", "metadata", "top_k"):
        assert dropped not in body


def test_openai_chat_short_user_and_plain_messages_untouched() -> None:
    req = {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "later"}], "user": "u-1"}
    body = openai_chat.request_from_canonical(req, "gpt-4o")
    assert body["user"] == "u-1"
    assert body["messages"] == req["messages"]


def test_responses_mid_conversation_system_messages_are_developer_items() -> None:
    body = openai_responses.request_from_canonical(canonical(), "gpt-4o")
    messages = [i for i in body["input"] if i["type"] == "message"]
    assert messages[0]["role"] == "system"  # the opening instructions
    assert [m["role"] for m in messages[1:]] == ["user", "developer", "developer", "user"]
    assert messages[2]["content"] == [{"type": "input_text", "text": "# Environment\ncwd: /tmp"}]
    outputs = [i for i in body["input"] if i["type"] == "function_call_output"]
    assert outputs[0]["output"] == "1\tsecret"
    assert outputs[1]["output"] == "Error: File does not exist."


def test_anthropic_target_folds_later_system_messages_into_the_user_turns() -> None:
    """OpenAI client -> Anthropic deployment: the opening system messages in ``system``,
    later ones in place, in the user turn next to them."""
    req = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Now answer in French."},
        {"role": "user", "content": "how are you?"},
        {"role": "system", "content": [{"type": "text", "text": "Last rule.", "cache_control": EPHEMERAL}]},
    ], "max_tokens": 100}
    body = am.request_from_canonical(req, "claude-sonnet-4-5")
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [
            {"type": "text", "text": reminder("Now answer in French.")},
            {"type": "text", "text": "how are you?"},
            {"type": "text", "text": reminder("Last rule."), "cache_control": EPHEMERAL},
        ]},
    ]


def test_anthropic_target_from_claude_code_shape_keeps_tool_results_first() -> None:
    body = am.request_from_canonical(canonical(), "claude-sonnet-4-5")
    turns = body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[0]["content"][-1] == {"type": "text", "text": reminder("# Environment\ncwd: /tmp")}
    assert turns[2]["content"][0]["type"] == "tool_result"
    assert {"type": "text", "text": reminder("Tool results follow.")} in turns[2]["content"]
    assert turns[1]["content"][0] == {"type": "thinking", "thinking": "I should read it.", "signature": "sig-1"}
    assert [b["text"] for b in body["system"]] == ["billing header", "You are a Claude agent."]


def test_gemini_folds_later_system_messages_and_cleans_schemas() -> None:
    body = gemini.request_from_canonical(canonical(), "gemini-2.5-flash")
    assert [p["text"] for p in body["systemInstruction"]["parts"]] == ["billing header", "You are a Claude agent."]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user", "model", "user"]
    first_user = [p.get("text") for p in body["contents"][0]["parts"]]
    assert first_user[-1] == reminder("# Environment\ncwd: /tmp")
    tool_turn = body["contents"][2]["parts"]
    assert tool_turn[0]["functionResponse"]["response"] == {"result": "1\tsecret"}
    assert {"text": reminder("Tool results follow.")} in tool_turn
    error_turn = body["contents"][4]["parts"]
    assert error_turn[0]["functionResponse"]["response"] == {"error": "File does not exist."}
    params = body["tools"][0]["functionDeclarations"][0]["parameters"]
    assert "$schema" not in params and "additionalProperties" not in params
    assert "exclusiveMinimum" not in params["properties"]["limit"]
    assert body["generationConfig"]["stopSequences"] == ["</done>"]
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": -1, "includeThoughts": True}


def test_bedrock_converse_folds_later_system_messages() -> None:
    body = bedrock_converse.request_from_canonical(canonical(), "anthropic.claude-3-5-sonnet-20241022-v2:0")
    assert body["system"][0] == {"text": "billing header"}
    assert all("system-reminder" not in str(b) for b in body["system"])
    turns = body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[0]["content"][-1] == {"text": reminder("# Environment\ncwd: /tmp")}
    assert "toolResult" in turns[2]["content"][0]
    assert {"text": reminder("Tool results follow.")} in turns[2]["content"]
    assert turns[4]["content"][0]["toolResult"]["status"] == "error"


def test_cohere_folds_later_system_messages_into_one_user_turn() -> None:
    req = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                        {"role": "system", "content": "In French."}, {"role": "assistant", "content": "Salut"},
                        {"role": "user", "content": "again"}]}
    body = cohere_chat.request_from_canonical(req, "command-r-plus")
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": reminder("In French.")}]},
        {"role": "assistant", "content": "Salut"},
        {"role": "user", "content": "again"},
    ]


def test_cohere_marks_a_failed_tool_result() -> None:
    body = cohere_chat.request_from_canonical(canonical(), "command-r-plus")
    tools = [m for m in body["messages"] if m["role"] == "tool"]
    assert tools[1]["content"] == "Error: File does not exist."
    assert [m["role"] for m in body["messages"]].count("system") == 1


def test_fold_is_free_without_mid_conversation_system_messages() -> None:
    msgs = [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]
    assert system_messages.fold_into_user_turns(msgs) is msgs
    assert system_messages.after_tool_results(msgs) is msgs


def test_an_empty_system_message_is_not_folded_into_an_empty_block() -> None:
    msgs = [{"role": "user", "content": "b"}, {"role": "system", "content": ""}]
    assert system_messages.fold_into_user_turns(msgs) == [{"role": "user", "content": "b"}]


# ---------------------------------------------------------------- max_tokens


@pytest.mark.parametrize(("model", "limit"), [
    ("gpt-4o", 16384), ("gpt-4o-mini", 16384), ("gpt-4o-2024-08-06", 16384), ("gpt-4.1-mini", 32768),
    ("gemini-2.5-flash", 65536), ("gemini-2.0-flash-001", 8192),
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", 8192), ("claude-opus-4-5-20251101", 64000),
    ("claude-opus-4-1", 32000), ("command-r-plus", 4000), ("my-own-model", None), ("gpt-4", 8192),
])
def test_table_limits(model: str, limit: int | None) -> None:
    assert output_limits.table_limit(model) == limit


def test_max_tokens_clamped_to_the_target_and_thinking_kept_below() -> None:
    req = {"max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 31999}}
    out = output_limits.clamp_max_tokens(req, "claude-3-5-sonnet-20241022")
    assert out["max_tokens"] == 8192
    assert out["thinking"]["budget_tokens"] < out["max_tokens"]
    assert req["max_tokens"] == 32000  # the input is not changed
    assert output_limits.clamp_max_tokens({"max_tokens": 100}, "gpt-4o") == {"max_tokens": 100}
    assert output_limits.clamp_max_tokens({"max_tokens": 9000}, "unknown-model") == {"max_tokens": 9000}


def test_model_info_limit_wins_over_the_table() -> None:
    out = output_limits.clamp_max_tokens({"max_tokens": 32000}, "gpt-4o", {"max_output_tokens": 4000})
    assert out["max_tokens"] == 4000
    out = output_limits.clamp_max_tokens({"max_tokens": 32000}, "my-model", {"max_tokens": 2048})
    assert out["max_tokens"] == 2048


def test_native_body_for_bedrock_and_vertex_claude_has_no_system_role() -> None:
    body = claude_code_body()
    folded = am.without_system_messages(body)
    roles = [m["role"] for m in folded["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert folded["messages"][0]["content"][-1] == {"type": "text", "text": reminder("# Environment\ncwd: /tmp")}
    tool_turn = folded["messages"][2]["content"]
    assert tool_turn[0]["type"] == "tool_result"  # results first, the folded text after
    assert {"type": "text", "text": reminder("Tool results follow.")} in tool_turn
    assert body["messages"][1]["role"] == "system"  # the client's body is not changed
    plain = {"messages": [{"role": "user", "content": "hi"}]}
    assert am.without_system_messages(plain) is plain


def test_vertex_claude_prepare_body_folds_system_messages() -> None:
    from lockgate.config import Deployment
    from lockgate.providers import registry

    provider = registry()["vertex_ai"]
    dep = Deployment(id="d1", model_name="c", provider="vertex_ai", model="claude-sonnet-4-5")
    claude = provider.for_deployment(dep)
    out = claude.prepare_body({"model": "claude-sonnet-4-5", **claude_code_body()}, dep, True)
    assert all(m["role"] != "system" for m in out["messages"])


PNG = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


def image_result_canonical() -> dict:
    return am.request_to_canonical({"model": "m", "max_tokens": 100, "messages": [
        {"role": "user", "content": "Look at /tmp/a.png"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read",
                                           "input": {"file_path": "/tmp/a.png"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [PNG]},
                                     {"type": "text", "text": "what is it?"}]},
    ]})


def test_openai_images_of_a_tool_result_follow_the_results() -> None:
    msgs = openai_chat.request_from_canonical(image_result_canonical(), "gpt-4o")["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "user", "user"]
    assert all(p["type"] == "text" for p in msgs[2]["content"])
    assert msgs[3]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert msgs[4]["content"] == [{"type": "text", "text": "what is it?"}]


def test_gemini_images_of_a_tool_result_follow_its_response() -> None:
    contents = gemini.request_from_canonical(image_result_canonical(), "gemini-2.5-flash")["contents"]
    parts = contents[2]["parts"]
    assert "functionResponse" in parts[0]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert parts[2] == {"text": "what is it?"}


PDF = {"type": "document", "title": "a.pdf",
       "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="}}


def test_pdf_documents_translate_as_file_parts_and_back() -> None:
    req = am.request_to_canonical({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": [PDF, {"type": "text", "text": "summarize"}]}]})
    part = req["messages"][0]["content"][0]
    assert part == {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQ=",
                                             "filename": "a.pdf"}}
    assert gemini.request_from_canonical(req, "gemini-2.5-flash")["contents"][0]["parts"][0] == {
        "inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQ="}}
    assert openai_chat.request_from_canonical(req, "gpt-4o")["messages"][0]["content"][0] == part
    assert am.request_from_canonical(req, "claude")["messages"][0]["content"][0] == PDF
    body = bedrock_converse.request_from_canonical(req, "amazon.nova-pro-v1:0")
    assert body["messages"][0]["content"][0] == {"document": {"format": "pdf", "name": "a",
                                                              "source": {"bytes": "JVBERi0xLjQ="}}}


@pytest.mark.parametrize(("budget", "effort"), [(31999, "high"), (8000, "medium"), (1024, "low")])
def test_openai_reasoning_models_get_max_completion_tokens_and_effort(budget: int, effort: str) -> None:
    req = {**canonical(), "thinking": {"type": "enabled", "budget_tokens": budget}}
    body = openai_chat.request_from_canonical(req, "o4-mini")
    assert "max_tokens" not in body and body["max_completion_tokens"] == 32000
    assert body["reasoning_effort"] == effort
    plain = openai_chat.request_from_canonical(req, "gpt-4o")
    assert plain["max_tokens"] == 32000 and "reasoning_effort" not in plain
    adaptive = openai_chat.request_from_canonical(canonical(), "openai/gpt-5")
    assert "reasoning_effort" not in adaptive and adaptive["max_completion_tokens"] == 32000


def test_openai_thinking_only_assistant_turn_is_left_out() -> None:
    req = am.request_to_canonical({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}]},
        {"role": "user", "content": "well?"}]})
    msgs = openai_chat.request_from_canonical(req, "gpt-4o")["messages"]
    assert [m["role"] for m in msgs] == ["user", "user"]


def test_responses_client_developer_items_reach_anthropic_in_place() -> None:
    req = openai_responses.request_to_canonical({"model": "m", "instructions": "Be brief.", "input": [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use French."}]},
        {"type": "message", "role": "user", "content": "how are you?"},
    ]})
    body = am.request_from_canonical(req, "claude-sonnet-4-5")
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "text", "text": reminder("Use French.")},
        {"type": "text", "text": "how are you?"}]}]
