"""OpenAI Responses API (``POST /v1/responses``), both directions.

Front door: a Responses request (``input`` as a string or a list of items,
``instructions``, flat function tools, ``text.format``, ``reasoning.effort``)
becomes the canonical chat request; a canonical response becomes a
``response`` object (reasoning item, message item, function_call items).
Provider side: the reverse, so an OpenAI deployment can be spoken to in this
format.  Streams (event encoder, decoder, usage tap) live in
``openai_responses_stream``.

The gateway keeps no conversation state: ``previous_response_id``,
``conversation`` and ``item_reference`` items only work when the request is
passed through to a provider that stores responses (OpenAI); on a translated
route they are a 400 naming the field.

Lossy spots, on purpose:
  * only ``function`` tools translate (hosted tools such as ``web_search`` need
    an OpenAI deployment: 400 elsewhere);
  * input ``reasoning`` items are dropped on translation (their
    ``encrypted_content`` means nothing to another provider);
  * ``store``, ``include``, ``truncation``, ``service_tier``,
    ``prompt_cache_key`` are ignored on translation;
  * the response object does not echo request settings (``tools``,
    ``temperature``...): it carries defaults.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..errors import BadRequest
from . import error_marked, openai_chat
from .system_messages import leading_count

NAME = "openai_responses"

STATEFUL = ("previous_response_id", "conversation")
_COPIED = ("temperature", "top_p", "stream", "metadata", "user", "parallel_tool_calls", "top_logprobs")


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


# ---------------------------------------------------------------- front door: request


def request_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    for name in STATEFUL:
        if body.get(name):
            raise BadRequest(
                f"'{name}' needs a provider that stores responses (an OpenAI deployment); "
                "this gateway keeps no conversation state: send the whole conversation in 'input'",
                param=name,
            )
    if body.get("background"):
        raise BadRequest("'background' responses need an OpenAI deployment", param="background")
    req: dict[str, Any] = {k: body[k] for k in _COPIED if body.get(k) is not None}
    if body.get("model"):
        req["model"] = body["model"]
    if body.get("safety_identifier") and "user" not in req:
        req["user"] = body["safety_identifier"]
    messages = [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
    req["messages"] = messages + input_messages(body.get("input"))
    if body.get("max_output_tokens") is not None:
        req["max_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        req["tools"] = [_tool_to_canonical(t) for t in body["tools"]]
    if body.get("tool_choice") is not None:
        req["tool_choice"] = _tool_choice_to_canonical(body["tool_choice"])
    effort = (body.get("reasoning") or {}).get("effort")
    if effort:
        req["reasoning_effort"] = effort
    fmt = _format_to_canonical((body.get("text") or {}).get("format"))
    if fmt:
        req["response_format"] = fmt
    return req


def input_messages(items: Any) -> list[dict[str, Any]]:
    """Responses ``input`` -> canonical messages (function calls folded into assistant turns)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items or ()):
        if not isinstance(item, dict):
            raise BadRequest(f"input[{i}] must be an object", param=f"input[{i}]")
        kind = item.get("type") or "message"
        if kind == "message":
            messages.append(_message(item, i))
        elif kind == "function_call":
            _append_call(messages, item, i)
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": _need(item, "call_id", i),
                             "content": _output_text(item.get("output"))})
        elif kind == "reasoning":
            continue
        else:
            raise BadRequest(f"input[{i}]: item type {kind!r} is not supported on this route", param=f"input[{i}]")
    return messages


def _need(item: dict[str, Any], key: str, i: int) -> Any:
    if not item.get(key):
        raise BadRequest(f"input[{i}].{key} is required", param=f"input[{i}].{key}")
    return item[key]


def _message(item: dict[str, Any], i: int) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise BadRequest(f"input[{i}].role must be user, assistant, system or developer", param=f"input[{i}].role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts = [_part(p, i) for p in content or ()]
    if role == "assistant" or all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, i: int) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image" and part.get("image_url"):
        image = {"url": part["image_url"]}
        if part.get("detail") and part["detail"] != "auto":
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and str(part.get("file_data", "")).startswith("data:"):
        return {"type": "file", "file": {"file_data": part["file_data"], "filename": part.get("filename")}}
    raise BadRequest(
        f"input[{i}]: content part {kind!r} is not supported here (file_id references need an OpenAI deployment)",
        param=f"input[{i}].content",
    )


def _append_call(messages: list[dict[str, Any]], item: dict[str, Any], i: int) -> None:
    call = {"id": _need(item, "call_id", i), "type": "function",
            "function": {"name": _need(item, "name", i), "arguments": item.get("arguments") or "{}"}}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and isinstance(last.get("content"), (str, type(None))):
        last.setdefault("tool_calls", []).append(call)
        if last.get("content") == "":
            last["content"] = None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(p.get("text", "") for p in output if isinstance(p, dict))
    return "" if output is None else str(output)


def _tool_to_canonical(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise BadRequest(f"tool type {kind!r} needs an OpenAI deployment; only function tools translate",
                         param="tools")
    fn = {"name": tool.get("name") or "", "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        fn["description"] = tool["description"]
    if tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _tool_choice_to_canonical(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if isinstance(choice, dict):  # allowed_tools, hosted tool types
        return choice.get("mode") or "auto"
    return choice


def _format_to_canonical(fmt: Any) -> dict[str, Any] | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    return None


# ---------------------------------------------------------------- front door: response


def response_from_canonical(resp: dict[str, Any], model: str) -> dict[str, Any]:
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    output = reasoning_items(msg.get("reasoning_content"))
    if msg.get("content"):
        output.append(message_item(new_id("msg_"), msg["content"]))
    for tc in msg.get("tool_calls") or ():
        fn = tc.get("function") or {}
        output.append(call_item(new_id("fc_"), tc.get("id") or new_id("call_"), fn.get("name") or "",
                                fn.get("arguments") or "", "completed"))
    return response_object(new_id("resp_"), model, output, choice.get("finish_reason"), resp.get("usage"))


def reasoning_items(text: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    return [{"type": "reasoning", "id": new_id("rs_"), "summary": [{"type": "summary_text", "text": text}]}]


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_object(
    resp_id: str, model: str, output: list[dict[str, Any]], finish: str | None, usage: dict[str, Any] | None,
    status: str | None = None,
) -> dict[str, Any]:
    reason = _INCOMPLETE.get(finish or "")
    status = status or ("incomplete" if reason else "completed")
    return {
        "id": resp_id, "object": "response", "created_at": int(time.time()), "status": status,
        "error": None, "incomplete_details": {"reason": reason} if reason and status == "incomplete" else None,
        "instructions": None, "max_output_tokens": None, "model": model, "output": output,
        "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
        "store": False, "temperature": None, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
        "tools": [], "top_p": None, "truncation": "disabled",
        "usage": native_usage(usage) if usage else None, "user": None, "metadata": {},
    }


def native_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Canonical usage -> Responses usage."""
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0},
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0},
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


def error_body(err: Exception) -> dict[str, Any]:
    return openai_chat.error_body(err)


def merge_defaults(body: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A passthrough body with the deployment's defaults (``max_tokens`` is ``max_output_tokens`` here)."""
    native = {("max_output_tokens" if k == "max_tokens" else k): v for k, v in defaults.items()}
    return {**native, **body}


def stream_encoder(model: str, request_id: str) -> Any:
    from .openai_responses_stream import StreamEncoderImpl

    return StreamEncoderImpl(model, request_id)


# ---------------------------------------------------------------- provider side


def request_from_canonical(req: dict[str, Any], model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": _items_from_messages(req.get("messages") or [])}
    body.update({k: req[k] for k in _COPIED if req.get(k) is not None})
    if req.get("max_tokens") is not None:
        body["max_output_tokens"] = req["max_tokens"]
    if req.get("tools"):
        body["tools"] = [_flat_tool(t) for t in req["tools"]]
    choice = req.get("tool_choice")
    if choice is not None:
        flat = isinstance(choice, dict) and (choice.get("function") or {}).get("name")
        body["tool_choice"] = {"type": "function", "name": flat} if flat else choice
    if req.get("reasoning_effort"):
        body["reasoning"] = {"effort": req["reasoning_effort"]}
    fmt = req.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        body["text"] = {"format": {"type": "json_schema", **(fmt.get("json_schema") or {})}}
    elif fmt.get("type") == "json_object":
        body["text"] = {"format": {"type": "json_object"}}
    return body


def _items_from_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages -> input items; a system message after the conversation began is a ``developer``
    item where it stands (the Responses API's mid-conversation instructions)."""
    items: list[dict[str, Any]] = []
    opening = leading_count(messages)
    for i, m in enumerate(messages):
        role = m.get("role")
        if role == "tool":
            output = _output_text(m.get("content")) if isinstance(m.get("content"), list) else m.get("content") or ""
            items.append({"type": "function_call_output", "call_id": m.get("tool_call_id"),
                          "output": error_marked(output, m.get("is_error"))})
            continue
        if role == "system" and i >= opening:
            role = "developer"
        text_type = "output_text" if role == "assistant" else "input_text"
        parts = _native_parts(m.get("content"), text_type)
        if parts:
            items.append({"type": "message", "role": role, "content": parts})
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {}
            items.append({"type": "function_call", "call_id": tc.get("id"), "name": fn.get("name"),
                          "arguments": fn.get("arguments") or "{}"})
    return items


def _native_parts(content: Any, text_type: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": text_type, "text": content}] if content else []
    parts = []
    for p in content or ():
        if p.get("type") == "text":
            parts.append({"type": text_type, "text": p.get("text") or ""})
        elif p.get("type") == "image_url":
            image = p.get("image_url") or {}
            parts.append({"type": "input_image", "image_url": image.get("url"), "detail": image.get("detail", "auto")})
        elif p.get("type") == "file":
            parts.append({"type": "input_file", **{k: v for k, v in (p.get("file") or {}).items() if v}})
    return parts


def _flat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") or {}
    out = {"type": "function", "name": fn.get("name"), "parameters": fn.get("parameters") or {}}
    out.update({k: fn[k] for k in ("description", "strict") if fn.get(k) is not None})
    return out


def response_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    texts, calls, thoughts = [], [], []
    for item in body.get("output") or ():
        kind = item.get("type")
        if kind == "message":
            texts += [p.get("text") or p.get("refusal") or "" for p in item.get("content") or ()]
        elif kind == "function_call":
            fn = {"name": item.get("name") or "", "arguments": item.get("arguments") or ""}
            calls.append({"id": item.get("call_id") or item.get("id"), "type": "function", "function": fn})
        elif kind == "reasoning":
            thoughts += [s.get("text") or "" for s in item.get("summary") or ()]
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        msg["tool_calls"] = calls
    if thoughts:
        msg["reasoning_content"] = "".join(thoughts)
    out: dict[str, Any] = {
        "id": body.get("id") or new_id("resp_"), "object": "chat.completion",
        "created": int(body.get("created_at") or time.time()), "model": body.get("model") or "",
        "choices": [{"index": 0, "message": msg, "finish_reason": finish_of(body, bool(calls))}],
    }
    usage = usage_from_body(body)
    if usage:
        out["usage"] = usage
    return out


def finish_of(body: dict[str, Any], has_calls: bool) -> str:
    reason = (body.get("incomplete_details") or {}).get("reason")
    if reason == "max_output_tokens":
        return "length"
    if reason == "content_filter":
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def canonical_usage(usage: Any) -> dict[str, Any] | None:
    """Responses usage -> canonical usage."""
    if not isinstance(usage, dict) or "input_tokens" not in usage:
        return None
    prompt, completion = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": usage.get("total_tokens") or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0},
        "completion_tokens_details": {
            "reasoning_tokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0},
    }


def usage_from_body(body: dict[str, Any]) -> dict[str, Any] | None:
    return canonical_usage(body.get("usage"))


def parse_error(status: int, body: bytes) -> tuple[str, str | None]:
    return openai_chat.parse_error(status, body)


def stream_decoder() -> Any:
    from .openai_responses_stream import StreamDecoderImpl

    return StreamDecoderImpl()


def usage_tap() -> Any:
    from .openai_responses_stream import UsageTapImpl

    return UsageTapImpl()
