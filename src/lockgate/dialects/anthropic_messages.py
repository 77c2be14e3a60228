"""Anthropic Messages API (``POST /v1/messages``).

Requests, responses and errors live here; the stream encoder/decoder, the usage
tap and the small tables shared by both halves (stop reasons, usage, error
types) live in ``anthropic_stream`` and are re-exported below, so this module
exposes the same names as every dialect.

Mid-conversation system messages: a ``role: "system"`` message inside
``messages`` (Claude Code sends them; text blocks only) becomes a canonical
system message where it stands.  Canonical -> Anthropic keeps the system
messages that open the conversation in the top-level ``system`` and folds every
later one, in place, into the neighbouring user turn as a
``<system-reminder>``-delimited text block (``system_messages``): that shape
every Anthropic model and every Anthropic-compatible endpoint accepts.

Lossy corners (everything else round-trips):
  * ``response_format`` is emulated with an extra system text block asking
    for JSON (Anthropic has no JSON mode);
  * OpenAI-only knobs (penalties, logprobs, seed, logit_bias, n=1, ...) are
    not sent; ``temperature`` is clamped to Anthropic's 0..1;
  * Anthropic -> canonical: server tools and block types the canonical form
    cannot carry (documents, search results, ...) are rejected with a 400.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..errors import BadRequest
from .anthropic_stream import (
    canonical_usage,
    error_body,
    finish_reason,
    lockgate_error_type,
    native_usage,
    stop_reason,
    stream_decoder,
    stream_encoder,
    usage_tap,
)
from .system_messages import delimited_part, fold_into_user_turns

NAME = "anthropic"

__all__ = [
    "NAME",
    "error_body",
    "parse_error",
    "request_from_canonical",
    "request_to_canonical",
    "response_from_canonical",
    "response_to_canonical",
    "stream_decoder",
    "stream_encoder",
    "usage_from_body",
    "usage_tap",
]

DEFAULT_MAX_TOKENS = 4096


# ================================================================ front door: request


def request_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    _validate_top(body)
    messages: list[dict[str, Any]] = []
    if body.get("system") is not None:
        messages.append(_system_to_canonical(body["system"]))
    for i, msg in enumerate(body["messages"]):
        messages.extend(_message_to_canonical(msg, f"messages[{i}]"))
    req: dict[str, Any] = {"model": body["model"], "messages": messages, "max_tokens": body["max_tokens"]}
    for key in ("temperature", "top_p", "top_k", "stream", "thinking"):
        if body.get(key) is not None:
            req[key] = body[key]
    if body.get("stop_sequences"):
        req["stop"] = list(body["stop_sequences"])
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        req["metadata"] = metadata
        if metadata.get("user_id"):
            req["user"] = metadata["user_id"]
    if body.get("tools"):
        req["tools"] = [_tool_to_canonical(t, f"tools[{i}]") for i, t in enumerate(body["tools"])]
    if body.get("tool_choice"):
        req.update(_tool_choice_to_canonical(body["tool_choice"]))
    return req


def _validate_top(body: Any) -> None:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", param="body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("model: field required (a non-empty string)", param="model")
    if not isinstance(body.get("messages"), list):
        raise BadRequest("messages: field required (a list)", param="messages")
    mt = body.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        raise BadRequest("max_tokens: field required (a positive integer)", param="max_tokens")


def _system_to_canonical(system: Any, where: str = "system") -> dict[str, Any]:
    if isinstance(system, str):
        return {"role": "system", "content": system}
    if not isinstance(system, list) or not all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in system
    ):
        raise BadRequest(f"{where}: must be a string or a list of text blocks", param=where)
    if any("cache_control" in b for b in system):
        return {"role": "system", "content": [_text_part(b) for b in system]}
    return {"role": "system", "content": "\n".join(b["text"] for b in system)}


def _text_part(block: dict[str, Any]) -> dict[str, Any]:
    part = {"type": "text", "text": block["text"]}
    if "cache_control" in block:
        part["cache_control"] = block["cache_control"]
    return part


def _message_to_canonical(msg: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant", "system"):
        raise BadRequest(f"{where}.role: must be 'user', 'assistant' or 'system'", param=f"{where}.role")
    content = msg.get("content")
    if msg["role"] == "system":  # a mid-conversation system message (Claude Code's reminders)
        return [_system_to_canonical(content, f"{where}.content")]
    if isinstance(content, str):
        return [{"role": msg["role"], "content": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise BadRequest(f"{where}.content: must be a string or a list of blocks", param=f"{where}.content")
    if msg["role"] == "assistant":
        return [_assistant_to_canonical(content, where)]
    return _user_to_canonical(content, where)


def _user_to_canonical(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """tool_result blocks become ``tool`` messages; runs of other blocks a user message (order kept)."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        if block.get("type") == "tool_result":
            if parts:
                out.append({"role": "user", "content": parts})
                parts = []
            out.append(_tool_result_to_canonical(block, f"{where}.content[{j}]"))
        else:
            parts.append(_part_to_canonical(block, f"{where}.content[{j}]"))
    if parts or not out:
        out.append({"role": "user", "content": parts})
    return out


def _part_to_canonical(block: dict[str, Any], where: str) -> dict[str, Any]:
    btype = block.get("type")
    if btype == "text" and isinstance(block.get("text"), str):
        return _text_part(block)
    if btype == "image":
        part: dict[str, Any] = {"type": "image_url", "image_url": {"url": _image_url(block, where)}}
        if "cache_control" in block:
            part["cache_control"] = block["cache_control"]
        return part
    if btype == "document" and (block.get("source") or {}).get("type") == "base64":
        return _document_to_canonical(block, where)
    raise BadRequest(f"{where}: unsupported content block type {btype!r}", param=f"{where}.type")


def _document_to_canonical(block: dict[str, Any], where: str) -> dict[str, Any]:
    """A base64 document (Claude Code's Read of a PDF) -> a canonical ``file`` part (a data URL)."""
    src = block["source"]
    if not src.get("data") or not src.get("media_type"):
        raise BadRequest(f"{where}.source: a base64 document needs media_type and data", param=f"{where}.source")
    file: dict[str, Any] = {"file_data": f"data:{src['media_type']};base64,{src['data']}"}
    if block.get("title"):
        file["filename"] = block["title"]
    part: dict[str, Any] = {"type": "file", "file": file}
    if "cache_control" in block:
        part["cache_control"] = block["cache_control"]
    return part


def _image_url(block: dict[str, Any], where: str) -> str:
    src = block.get("source") or {}
    if src.get("type") == "base64" and src.get("data") and src.get("media_type"):
        return f"data:{src['media_type']};base64,{src['data']}"
    if src.get("type") == "url" and src.get("url"):
        return src["url"]
    raise BadRequest(f"{where}.source: must be a base64 or url image source", param=f"{where}.source")


def _tool_result_to_canonical(block: dict[str, Any], where: str) -> dict[str, Any]:
    if not block.get("tool_use_id"):
        raise BadRequest(f"{where}.tool_use_id: field required", param=f"{where}.tool_use_id")
    content = block.get("content")
    if content is None:
        content = ""
    elif isinstance(content, list):
        content = [_part_to_canonical(b, f"{where}.content[{k}]") for k, b in enumerate(content)]
    elif not isinstance(content, str):
        raise BadRequest(f"{where}.content: must be a string or a list of blocks", param=f"{where}.content")
    if "cache_control" in block:  # kept on the last part of the result
        content = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        if content:
            content[-1] = {**content[-1], "cache_control": block["cache_control"]}
    msg: dict[str, Any] = {"role": "tool", "tool_call_id": block["tool_use_id"], "content": content}
    if block.get("is_error"):
        msg["is_error"] = True
    return msg


def _assistant_to_canonical(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        btype = block.get("type")
        if btype == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": args}})
        elif btype == "thinking":
            thinking.append({"type": "thinking", "thinking": block.get("thinking", ""),
                             "signature": block.get("signature", "")})
        elif btype == "redacted_thinking":
            thinking.append({"type": "redacted_thinking", "data": block.get("data", "")})
        else:
            parts.append(_part_to_canonical(block, f"{where}.content[{j}]"))
    msg: dict[str, Any] = {"role": "assistant", "content": _assistant_content(parts)}
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        msg["thinking_blocks"] = thinking
    return msg


def _assistant_content(parts: list[dict[str, Any]]) -> Any:
    if not parts:
        return None
    if all(p["type"] == "text" and "cache_control" not in p for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tool_to_canonical(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or not tool.get("name"):
        raise BadRequest(f"{where}.name: field required", param=f"{where}.name")
    if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
        raise BadRequest(f"{where}: only custom tools with an input_schema are supported", param=f"{where}.type")
    fn: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    out: dict[str, Any] = {"type": "function", "function": fn}
    if "cache_control" in tool:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice_to_canonical(choice: Any) -> dict[str, Any]:
    ctype = choice.get("type") if isinstance(choice, dict) else None
    if ctype == "tool" and choice.get("name"):
        out: dict[str, Any] = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    elif ctype in ("auto", "any", "none"):
        out = {"tool_choice": {"auto": "auto", "any": "required", "none": "none"}[ctype]}
    else:
        raise BadRequest("tool_choice: type must be auto, any, tool (with name) or none", param="tool_choice")
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
    return out


# ================================================================ front door: response


def response_from_canonical(resp: dict[str, Any], model: str) -> dict[str, Any]:
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    rid = str(resp.get("id") or "")
    return {
        "id": rid if rid.startswith("msg_") else "msg_" + rid.removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _blocks_from_message(msg),
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": native_usage(resp.get("usage")),
    }


def _blocks_from_message(msg: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = list(msg.get("thinking_blocks") or ())
    if not blocks and msg.get("reasoning_content"):
        # no signature to give: the provider did not sign its reasoning
        blocks.append({"type": "thinking", "thinking": msg["reasoning_content"], "signature": ""})
    text = _text_of(msg.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                       "input": _parse_args(fn.get("arguments"))})
    return blocks


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content or ""


def _parse_args(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


# ================================================================ provider side: request


def request_from_canonical(req: dict[str, Any], model: str) -> dict[str, Any]:
    if (req.get("n") or 1) > 1:
        raise BadRequest("anthropic does not support n > 1", param="n")
    system, messages = _split_messages(req.get("messages") or [])
    system.extend(_json_mode_blocks(req.get("response_format")))
    body: dict[str, Any] = {"model": model, "messages": messages,
                            "max_tokens": req.get("max_tokens") or DEFAULT_MAX_TOKENS}
    if system:
        body["system"] = system
    for key in ("top_p", "top_k", "thinking", "stream"):
        if req.get(key) is not None:
            body[key] = req[key]
    if req.get("temperature") is not None:
        body["temperature"] = min(req["temperature"], 1.0)
    stop = req.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    metadata = _metadata(req)
    if metadata:
        body["metadata"] = metadata
    if req.get("tools"):
        body["tools"] = [_tool_from_canonical(t) for t in req["tools"]]
        choice = _tool_choice_from_canonical(req.get("tool_choice"), req.get("parallel_tool_calls"))
        if choice:
            body["tool_choice"] = choice
    return body


def _metadata(req: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's metadata accepts only ``user_id``."""
    user_id = (req.get("metadata") or {}).get("user_id") or req.get("user")
    return {"user_id": user_id} if user_id else {}


def _split_messages(msgs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The system/developer messages that open the conversation go, in order, to the
    top-level ``system``; later ones are folded into the neighbouring user turn
    (``system_messages``); the rest become alternating user/assistant messages."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(fold_into_user_turns(msgs)):
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_system_blocks(m.get("content"), f"messages[{i}]"))
            continue
        blocks = _blocks_for(m, f"messages[{i}]")
        wire_role = "assistant" if role == "assistant" else "user"
        if not blocks:
            continue
        if turns and turns[-1]["role"] == wire_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": wire_role, "content": blocks})
    return system, [_finish_turn(t) for t in turns]


def without_system_messages(body: dict[str, Any]) -> dict[str, Any]:
    """A native body whose ``role: "system"`` messages are folded, in place, into the user turns
    (for Anthropic models behind Bedrock and Vertex, which may not take the first-party API's
    newer shapes); the same dict when it has none."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not any(isinstance(m, dict) and m.get("role") == "system" for m in msgs):
        return body
    turns: list[dict[str, Any]] = []
    for m in msgs:
        if isinstance(m, dict) and m.get("role") == "system":
            part = delimited_part(m.get("content"))
            if part is None:
                continue
            m = {"role": "user", "content": [part]}
        if turns and turns[-1].get("role") == "user" and m.get("role") == "user":
            merged = _as_blocks(turns[-1].get("content")) + _as_blocks(m.get("content"))
            turns[-1] = _finish_turn({"role": "user", "content": merged})
        else:
            turns.append(m)
    return {**body, "messages": turns}


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or ())


def _finish_turn(turn: dict[str, Any]) -> dict[str, Any]:
    blocks = turn["content"]
    if turn["role"] == "user" and any(b["type"] == "tool_result" for b in blocks):
        # Anthropic wants the tool results first in the user turn
        blocks = [b for b in blocks if b["type"] == "tool_result"] + [
            b for b in blocks if b["type"] != "tool_result"
        ]
    if len(blocks) == 1 and blocks[0]["type"] == "text" and "cache_control" not in blocks[0]:
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return {"role": turn["role"], "content": blocks}


def _system_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or ():
        if part.get("type") != "text":
            raise BadRequest(f"{where}.content: system messages may only hold text", param=f"{where}.content")
        if part.get("text"):
            blocks.append(_text_block(part))
    return blocks


def _text_block(part: dict[str, Any]) -> dict[str, Any]:
    block = {"type": "text", "text": part["text"]}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _blocks_for(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    role = m.get("role")
    if role == "user":
        return _content_blocks(m.get("content"), where)
    if role == "assistant":
        blocks = [dict(b) for b in m.get("thinking_blocks") or ()]
        blocks += _content_blocks(m.get("content"), where)
        blocks += [_tool_use_block(c) for c in m.get("tool_calls") or ()]
        return blocks
    if role == "tool":
        return [_tool_result_block(m, where)]
    raise BadRequest(f"{where}.role: unsupported role {role!r}", param=f"{where}.role")


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or ():
        ptype = part.get("type")
        if ptype == "text":
            if part.get("text"):
                blocks.append(_text_block(part))
        elif ptype == "image_url":
            blocks.append(_image_block(part, where))
        elif ptype == "file" and str((part.get("file") or {}).get("file_data", "")).startswith("data:"):
            blocks.append(_document_block(part))
        else:
            raise BadRequest(f"{where}.content: unsupported part type {ptype!r}", param=f"{where}.content")
    return blocks


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    ref = part.get("image_url")
    url = ref.get("url", "") if isinstance(ref, dict) else str(ref or "")
    if url.startswith("data:") and ";base64," in url:
        mime, data = url[5:].split(";base64,", 1)
        block: dict[str, Any] = {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
    elif url.startswith(("https://", "http://")):
        block = {"type": "image", "source": {"type": "url", "url": url}}
    else:
        raise BadRequest(f"{where}.content: image_url must be a base64 data URL or http(s) URL",
                         param=f"{where}.content")
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _document_block(part: dict[str, Any]) -> dict[str, Any]:
    file = part["file"]
    mime, _, data = file["file_data"][5:].partition(";base64,")
    block: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}}
    if file.get("filename"):
        block["title"] = file["filename"]
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _tool_use_block(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": _parse_args(fn.get("arguments"))}


def _tool_result_block(m: dict[str, Any], where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.get("tool_call_id")}
    content = _content_blocks(m.get("content"), where)
    if content:
        block["content"] = content
    if m.get("is_error"):
        block["is_error"] = True
    return block


def _json_mode_blocks(fmt: Any) -> list[dict[str, Any]]:
    """Anthropic has no JSON mode: ``response_format`` becomes an instruction
    appended to the system prompt (best effort, not enforced by the provider)."""
    ftype = fmt.get("type") if isinstance(fmt, dict) else None
    if ftype == "json_object":
        text = "Respond only with a valid JSON object, without any other text."
    elif ftype == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        text = ("Respond only with a valid JSON object, without any other text, that matches "
                "this JSON schema: " + orjson.dumps(schema).decode())
    else:
        return []
    return [{"type": "text", "text": text}]


def _tool_from_canonical(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") or {}
    out: dict[str, Any] = {"name": fn.get("name"),
                           "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    if "cache_control" in tool:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice_from_canonical(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        out: dict[str, Any] = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    elif choice in ("auto", "required", "none"):
        out = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    elif parallel is False:
        out = {"type": "auto"}
    else:
        return None
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# ================================================================ provider side: response


def response_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    texts, calls, thinking = [], [], []
    for block in body.get("content") or ():
        btype = block.get("type")
        if btype == "text":
            texts.append(block.get("text", ""))
        elif btype == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif btype in ("thinking", "redacted_thinking"):
            thinking.append(block)
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        reasoning = "".join(b.get("thinking", "") for b in thinking if b["type"] == "thinking")
        if reasoning:
            msg["reasoning_content"] = reasoning
        msg["thinking_blocks"] = thinking
    out = {
        "id": body.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": msg, "finish_reason": finish_reason(body.get("stop_reason")),
                     "logprobs": None}],
    }
    usage = usage_from_body(body)
    if usage:
        out["usage"] = usage
    return out


def usage_from_body(body: dict[str, Any]) -> dict[str, Any] | None:
    usage = body.get("usage")
    return canonical_usage(usage) if isinstance(usage, dict) else None


def parse_error(status: int, body: bytes) -> tuple[str, str | None]:
    """Message and Lockgate (OpenAI-style) error type of an Anthropic error body."""
    try:
        err = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        err = None
    if isinstance(err, dict):
        message = str(err.get("message") or f"upstream returned {status}")
        return message, lockgate_error_type(status, err.get("type"))
    # a non-JSON body (proxy HTML page, ...) is not echoed: it could hold anything
    return f"upstream returned {status}", lockgate_error_type(status, None)


# canonical request parameters this dialect can express (forwarding checks the rest against drop_params)
SUPPORTED_PARAMS = frozenset({
    "max_tokens", "temperature", "top_p", "top_k", "stop", "tools", "tool_choice", "parallel_tool_calls",
    "user", "metadata", "thinking", "response_format", "n",
})
