"""Amazon Bedrock's Converse API (``POST /model/{modelId}/converse`` and ``/converse-stream``).

Provider side only: no client speaks Converse to Lockgate, so this module builds
Converse requests from the canonical form and reads Converse responses, stream
events (``bedrock_converse_stream``), errors and usage back.

Wire shape: ``messages`` of ``{"role", "content": [block]}`` where a block is one
of ``{"text"}``, ``{"image": {"format", "source": {"bytes": <base64>}}}``,
``{"toolUse": {"toolUseId", "name", "input"}}``, ``{"toolResult": {"toolUseId",
"content": [{"text"}|{"json"}], "status"}}``, ``{"reasoningContent": ...}`` or
``{"cachePoint": {"type": "default"}}`` (placed after the block that carried
``cache_control``); ``system`` is a list of ``{"text"}`` (and cache points);
``inferenceConfig`` holds maxTokens, temperature, topP, stopSequences;
``toolConfig`` the tools and toolChoice.  Model-specific knobs go into
``additionalModelRequestFields`` (Anthropic's ``thinking`` and ``top_k``).

System messages that open the conversation go to ``system``; later ones are
folded, in place, into the neighbouring user turn (``<system-reminder>``-delimited).

Lossy corners: images must be inline (``data:`` URLs) or ``s3://`` (Bedrock
cannot fetch URLs and Lockgate does not fetch for it); ``tool_choice: "none"``
sends the tools without a choice (Converse has no "none"); ``response_format``,
penalties, seed, logprobs and ``n`` are not sent; ``thinking``/``top_k``
reach only Anthropic models.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from ..errors import BadRequest, LockgateError, type_for_status
from .bedrock_converse_stream import canonical_usage, finish_reason, stream_decoder, usage_tap
from .system_messages import fold_into_user_turns

NAME = "bedrock_converse"

__all__ = [
    "NAME",
    "error_body",
    "parse_error",
    "request_from_canonical",
    "response_to_canonical",
    "stream_decoder",
    "usage_from_body",
    "usage_tap",
]

DEFAULT_MAX_TOKENS = 4096
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_EFFORT_BUDGET = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}


def cache_point() -> dict[str, Any]:
    return {"cachePoint": {"type": "default"}}


def is_anthropic(model: str) -> bool:
    """Anthropic model ids, also behind cross-region profiles (``us.anthropic.``) and ARNs."""
    return model.startswith("anthropic.") or ".anthropic." in model or "/anthropic." in model


# ================================================================ request


def request_from_canonical(req: dict[str, Any], model: str) -> dict[str, Any]:
    if (req.get("n") or 1) > 1:
        raise BadRequest("bedrock converse does not support n > 1", param="n")
    system, messages = _split(req.get("messages") or [])
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    body["inferenceConfig"] = _inference_config(req)
    tools = _tool_config(req)
    if tools:
        body["toolConfig"] = tools
    extra = _additional_fields(req, model)
    if extra:
        body["additionalModelRequestFields"] = extra
    return body


def _inference_config(req: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"maxTokens": req.get("max_tokens") or req.get("max_completion_tokens")
                              or DEFAULT_MAX_TOKENS}
    if req.get("temperature") is not None:
        config["temperature"] = req["temperature"]
    if req.get("top_p") is not None:
        config["topP"] = req["top_p"]
    stop = req.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _additional_fields(req: dict[str, Any], model: str) -> dict[str, Any]:
    if not is_anthropic(model):
        return {}
    extra: dict[str, Any] = {}
    thinking = req.get("thinking")
    if isinstance(thinking, dict):
        extra["thinking"] = thinking
    elif req.get("reasoning_effort") in _EFFORT_BUDGET:
        extra["thinking"] = {"type": "enabled", "budget_tokens": _EFFORT_BUDGET[req["reasoning_effort"]]}
    if req.get("top_k") is not None:
        extra["top_k"] = req["top_k"]
    return extra


def _split(msgs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Leading system/developer messages -> ``system``; later ones folded into the
    neighbouring user turn (``system_messages``); the rest -> alternating turns."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(fold_into_user_turns(msgs)):
        where = f"messages[{i}]"
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_system_blocks(m.get("content"), where))
            continue
        blocks = _blocks_for(m, where)
        wire_role = "assistant" if role == "assistant" else "user"
        if not blocks:
            continue
        if turns and turns[-1]["role"] == wire_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": wire_role, "content": blocks})
    for turn in turns:  # tool results first in a user turn, as Bedrock's models expect
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: "toolResult" not in b)
    return system, turns


def _system_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        if part.get("type") != "text":
            raise BadRequest(f"{where}.content: system messages may only hold text", param=f"{where}.content")
        if part.get("text"):
            blocks.append({"text": part["text"]})
            if "cache_control" in part:
                blocks.append(cache_point())
    return blocks


def _blocks_for(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    role = m.get("role")
    if role == "user":
        return _content_blocks(m.get("content"), where)
    if role == "assistant":
        blocks = [_reasoning_block(b) for b in m.get("thinking_blocks") or ()]
        blocks += _content_blocks(m.get("content"), where)
        blocks += [_tool_use_block(c) for c in m.get("tool_calls") or ()]
        return blocks
    if role == "tool":
        return [_tool_result_block(m, where)]
    raise BadRequest(f"{where}.role: unsupported role {role!r}", param=f"{where}.role")


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        ptype = part.get("type")
        if ptype == "text":
            if not part.get("text"):
                continue
            blocks.append({"text": part["text"]})
        elif ptype == "image_url":
            blocks.append(_image_block(part, where))
        elif ptype == "file":
            blocks.append(_document_block(part, where))
        else:
            raise BadRequest(f"{where}.content: unsupported part type {ptype!r}", param=f"{where}.content")
        if "cache_control" in part:
            blocks.append(cache_point())
    return blocks


_DOCUMENT_FORMATS = {"application/pdf": "pdf", "text/csv": "csv", "text/html": "html", "text/plain": "txt",
                     "text/markdown": "md", "application/msword": "doc",
                     "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
                     "application/vnd.ms-excel": "xls",
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx"}


def _document_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    """A canonical ``file`` part (data URL) -> a Converse ``document`` block."""
    file = part.get("file") or {}
    url = str(file.get("file_data") or "")
    mime, _, data = url[5:].partition(";base64,") if url.startswith("data:") else ("", "", "")
    fmt = _DOCUMENT_FORMATS.get(mime)
    if not fmt or not data:
        raise BadRequest(f"{where}.content: Bedrock takes inline documents of types "
                         f"{', '.join(sorted(set(_DOCUMENT_FORMATS.values())))}", param=f"{where}.content")
    stem = str(file.get("filename") or "document").rsplit(".", 1)[0]
    name = "".join(c if c.isalnum() or c in " -()[]" else "-" for c in stem)[:200] or "document"
    return {"document": {"format": fmt, "name": name, "source": {"bytes": data}}}


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    ref = part.get("image_url")
    url = ref.get("url", "") if isinstance(ref, dict) else str(ref or "")
    if url.startswith("data:") and ";base64," in url:
        mime, data = url[5:].split(";base64,", 1)
        fmt = _IMAGE_FORMATS.get(mime.lower())
        if fmt is None:
            raise BadRequest(f"{where}.content: image type {mime!r} is not supported by Bedrock "
                             "(png, jpeg, gif, webp)", param=f"{where}.content")
        return {"image": {"format": fmt, "source": {"bytes": data}}}
    if url.startswith("s3://"):
        ext = url.rsplit(".", 1)[-1].lower()
        fmt = {"jpg": "jpeg"}.get(ext, ext)
        if fmt not in _IMAGE_FORMATS.values():
            raise BadRequest(f"{where}.content: cannot tell the image format of {url!r}", param=f"{where}.content")
        return {"image": {"format": fmt, "source": {"s3Location": {"uri": url}}}}
    raise BadRequest(f"{where}.content: Bedrock needs images inline as base64 data URLs (or s3:// URIs)",
                     param=f"{where}.content")


def _reasoning_block(block: dict[str, Any]) -> dict[str, Any]:
    if block.get("type") == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": block.get("data", "")}}
    text = {"text": block.get("thinking", "")}
    if block.get("signature"):
        text["signature"] = block["signature"]
    return {"reasoningContent": {"reasoningText": text}}


def _tool_use_block(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    try:
        parsed = args if isinstance(args, dict) else orjson.loads(args or "{}")
    except orjson.JSONDecodeError:
        parsed = {}
    return {"toolUse": {"toolUseId": call.get("id"), "name": fn.get("name"),
                        "input": parsed if isinstance(parsed, dict) else {}}}


def _tool_result_block(m: dict[str, Any], where: str) -> dict[str, Any]:
    content = m.get("content")
    if isinstance(content, str):
        parts = [{"text": content or " "}]
    else:
        parts = [b for b in _content_blocks(content, where) if "cachePoint" not in b] or [{"text": " "}]
    result: dict[str, Any] = {"toolUseId": m.get("tool_call_id"), "content": parts}
    result["status"] = "error" if m.get("is_error") else "success"
    return {"toolResult": result}


def _tool_config(req: dict[str, Any]) -> dict[str, Any] | None:
    tools: list[dict[str, Any]] = []
    for tool in req.get("tools") or ():
        fn = tool.get("function") or {}
        spec: dict[str, Any] = {"name": fn.get("name"),
                                "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        tools.append({"toolSpec": spec})
        if "cache_control" in tool:
            tools.append(cache_point())
    if not tools:
        return None
    config: dict[str, Any] = {"tools": tools}
    choice = req.get("tool_choice")
    if isinstance(choice, dict):
        config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name") or choice.get("name")}}
    elif choice in ("auto", "required"):
        config["toolChoice"] = {"auto": {}} if choice == "auto" else {"any": {}}
    return config


# ================================================================ response


def response_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    blocks = ((body.get("output") or {}).get("message") or {}).get("content") or ()
    texts, calls, thinking = [], [], []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId"), "type": "function", "function": {
                "name": use.get("name"), "arguments": orjson.dumps(use.get("input") or {}).decode()}})
        elif "reasoningContent" in block:
            thinking.append(_thinking_block(block["reasoningContent"]))
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        reasoning = "".join(b.get("thinking", "") for b in thinking)
        if reasoning:
            msg["reasoning_content"] = reasoning
        msg["thinking_blocks"] = thinking
    out: dict[str, Any] = {
        "id": "chatcmpl-" + uuid.uuid4().hex,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "",
        "choices": [{"index": 0, "message": msg, "finish_reason": finish_reason(body.get("stopReason")),
                     "logprobs": None}],
    }
    usage = usage_from_body(body)
    if usage:
        out["usage"] = usage
    return out


def _thinking_block(content: dict[str, Any]) -> dict[str, Any]:
    if "redactedContent" in content:
        return {"type": "redacted_thinking", "data": content["redactedContent"]}
    text = content.get("reasoningText") or {}
    return {"type": "thinking", "thinking": text.get("text", ""), "signature": text.get("signature", "")}


def usage_from_body(body: dict[str, Any]) -> dict[str, Any] | None:
    usage = body.get("usage")
    return canonical_usage(usage) if isinstance(usage, dict) else None


# ================================================================ errors


def parse_error(status: int, body: bytes) -> tuple[str, str | None]:
    """Bedrock errors are ``{"message": ...}``; the exception name travels in the
    ``x-amzn-ErrorType`` header, which the provider folds into ``__type``."""
    try:
        err = orjson.loads(body)
    except orjson.JSONDecodeError:
        err = None
    if not isinstance(err, dict):
        return f"upstream returned {status}", type_for_status(status)
    message = str(err.get("message") or err.get("Message") or f"upstream returned {status}")
    name = str(err.get("__type") or "").split(":", 1)[0].rsplit("#", 1)[-1]
    return (f"{message} ({name})" if name else message), type_for_status(status)


def error_body(err: Exception) -> dict[str, Any]:
    return {"message": err.message if isinstance(err, LockgateError) else "internal error"}


# canonical request parameters this dialect can express (forwarding checks the rest against drop_params)
SUPPORTED_PARAMS = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop", "tools", "tool_choice",
    "thinking", "reasoning_effort", "n", "user", "metadata", "parallel_tool_calls",
})
