"""Google Gemini API v1beta: ``generateContent`` / ``streamGenerateContent?alt=sse``.

Provider side: canonical request -> GenerateContentRequest, GenerateContentResponse
-> canonical response, Google error bodies -> (message, type); embeddings go
through ``batchEmbedContents``.  Front-door side: the reverse, for a
Gemini-native front door.  Stream decoding/encoding and the usage tap live in
``gemini_stream``.  Field names are read camelCase (as the REST API returns
them) or snake_case; they are always written camelCase.

System messages: the ones that open the conversation go to ``systemInstruction``;
a later one (Claude Code's mid-conversation reminders) is folded, in place, into
the neighbouring user turn as a ``<system-reminder>``-delimited text part.

Lossy spots, on purpose:
  * thinking: thought text is never sent back to Gemini (it ignores it); only
    the signature of the first signed ``thinking_blocks`` entry travels, as the
    ``thoughtSignature`` of the message's first functionCall part (the one
    Gemini validates) or else of its first part; further signatures are dropped.
    Gemini 3 rejects replayed function calls without a signature, so for
    ``gemini-3*`` models such calls get Google's documented
    ``skip_thought_signature_validator`` sentinel.  A response keeps one
    signature per candidate (the first functionCall's, else the last seen).
  * JSON schemas (tool parameters, responseSchema) are reduced to the OpenAPI
    subset Gemini accepts: unknown keywords dropped, local ``$ref`` inlined,
    ``type: [x, "null"]`` -> ``nullable``, non-string enums and string formats
    other than enum/date-time dropped.
  * dropped on the way to Gemini: ``cache_control``, image ``detail``, ``user``,
    ``metadata``, ``parallel_tool_calls``; thinking budgets above 24576 are
    clamped (the largest every 2.5 model accepts).
  * dropped on the way back: executableCode / codeExecutionResult / inlineData
    parts of a response, citation and grounding metadata, safety ratings.
  * ``toolUsePromptTokenCount`` is counted into ``prompt_tokens`` (billed as input).
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import time
from functools import lru_cache
from typing import Any

import orjson

from ..errors import BadRequest, LockgateError, type_for_status
from .system_messages import fold_into_user_turns

NAME = "gemini"

SKIP_SIGNATURE = "skip_thought_signature_validator"
MAX_THINKING_BUDGET = 24576
_EFFORT_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


# ---------------------------------------------------------------- shared helpers


@lru_cache(maxsize=256)
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def g(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` for a camelCase key, falling back to its snake_case spelling."""
    if not isinstance(obj, dict):
        return default
    value = obj.get(key)
    if value is None:
        value = obj.get(_snake(key))
    return default if value is None else value


def call_id(name: str, args: Any, candidate: int, n: int) -> str:
    """Deterministic id for a functionCall that came without one."""
    seed = orjson.dumps([candidate, n, name, args], option=orjson.OPT_SORT_KEYS)
    return "call_" + hashlib.sha1(seed).hexdigest()[:24]


def parse_args(arguments: Any) -> dict[str, Any]:
    """OpenAI ``arguments`` (JSON string) -> the Struct Gemini wants ({} when unusable)."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


_FILTER_REASONS = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}


def finish_reason(reason: str | None, has_calls: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTER_REASONS:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def usage_from_metadata(meta: Any) -> dict[str, Any] | None:
    """Canonical usage of a ``usageMetadata`` dict (None when it holds no counts)."""
    if not isinstance(meta, dict) or not any(k.endswith(("TokenCount", "_token_count")) for k in meta):
        return None
    prompt = g(meta, "promptTokenCount", 0) + g(meta, "toolUsePromptTokenCount", 0)
    thoughts = g(meta, "thoughtsTokenCount", 0)
    completion = g(meta, "candidatesTokenCount", 0) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": g(meta, "totalTokenCount") or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": g(meta, "cachedContentTokenCount", 0)},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def usage_metadata(usage: dict[str, Any]) -> dict[str, Any]:
    """Canonical usage -> Gemini ``usageMetadata``."""
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": max(completion - reasoning, 0)}
    if cached:
        meta["cachedContentTokenCount"] = cached
    if reasoning:
        meta["thoughtsTokenCount"] = reasoning
    meta["totalTokenCount"] = usage.get("total_tokens") or prompt + completion
    return meta


# ---------------------------------------------------------------- errors

_STATUS_TYPES = {
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_error",
    "DEADLINE_EXCEEDED": "timeout_error",
    "UNAVAILABLE": "api_error",
    "INTERNAL": "api_error",
}

_HTTP_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip


def _is_key_error(err: dict[str, Any]) -> bool:
    for detail in err.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("reason", "")).startswith("API_KEY_"):
            return True
    message = str(err.get("message") or "")
    return "API key not valid" in message or "API key expired" in message


def error_type(err: dict[str, Any], status: int) -> str:
    """OpenAI-style error type of a Google error object."""
    if _is_key_error(err):
        return "authentication_error"
    return _STATUS_TYPES.get(str(err.get("status") or ""), type_for_status(status))


def _error_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError):
        return None
    if isinstance(data, list) and data:  # the non-SSE stream wraps errors in an array
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else None


def parse_error(status: int, body: bytes) -> tuple[str, str | None]:
    """Message and OpenAI error type of a Google ``{"error": {code, message, status}}``."""
    err = _error_object(body)
    if err is None:
        return f"upstream returned {status}", type_for_status(status)
    return str(err.get("message") or f"upstream returned {status}"), error_type(err, status)


def error_body(err: Exception) -> dict[str, Any]:
    if not isinstance(err, LockgateError):
        return {"error": {"code": 500, "message": "internal error", "status": "INTERNAL"}}
    code = err.status
    status = _HTTP_STATUS.get(code) or ("INVALID_ARGUMENT" if code < 500 else "INTERNAL")
    return {"error": {"code": code, "message": err.message, "status": status}}


# ---------------------------------------------------------------- provider side: request

_SCHEMA_KEYS = frozenset((
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern",
    "example", "propertyOrdering", "default", "minimum", "maximum",
))  # fmt: skip


def clean_schema(schema: Any, defs: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A JSON schema reduced to the OpenAPI subset Gemini accepts (recursively)."""
    if not isinstance(schema, dict):
        return schema
    if defs is None:
        defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    if depth > 24:
        return {"type": "object"}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1], {"type": "object"})
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return clean_schema(merged, defs, depth + 1)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            if value:
                out[key] = {n: clean_schema(s, defs, depth + 1) for n, s in value.items()}
        elif key == "items":
            out[key] = clean_schema(value, defs, depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            out["anyOf"] = [clean_schema(s, defs, depth + 1) for s in value]
        elif key == "const" and isinstance(value, str):
            out["enum"] = [value]
        elif key in _SCHEMA_KEYS:
            out[key] = value
    _fix_schema_types(out)
    return out


def _fix_schema_types(out: dict[str, Any]) -> None:
    types = out.get("type")
    if isinstance(types, list):
        real = [t for t in types if t != "null"]
        if len(real) < len(types):
            out["nullable"] = True
        if len(real) == 1:
            out["type"] = real[0]
        else:
            del out["type"]
            out["anyOf"] = [{"type": t} for t in real]
    any_of = out.get("anyOf")
    if any_of and any(s.get("type") == "null" for s in any_of if isinstance(s, dict)):
        out["anyOf"] = [s for s in any_of if not (isinstance(s, dict) and s.get("type") == "null")]
        out["nullable"] = True
    if "enum" in out and not all(isinstance(v, str) for v in out["enum"] or [None]):
        del out["enum"]
    if out.get("type") == "string" and out.get("format") not in (None, "enum", "date-time"):
        del out["format"]


_MIME_BY_EXT = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
    "webp": "image/webp", "heic": "image/heic", "heif": "image/heif", "pdf": "application/pdf",
    "mp3": "audio/mp3", "wav": "audio/wav", "mp4": "video/mp4",
}  # fmt: skip


def _media_part(url: str) -> dict[str, Any] | None:
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        mime = header.split(";")[0] or "application/octet-stream"
        return {"inlineData": {"mimeType": mime, "data": data}}
    if not url:
        return None
    ext = url.split("?")[0].split("#")[0].rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return {"fileData": {"mimeType": _MIME_BY_EXT.get(ext, "image/jpeg"), "fileUri": url}}


def _content_parts(content: Any, media: bool = True) -> list[dict[str, Any]]:
    """Canonical message content -> Gemini parts (empty text dropped: Gemini rejects it)."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for p in content or ():
        kind = p.get("type")
        if kind == "text" and p.get("text"):
            parts.append({"text": p["text"]})
        elif media and kind == "image_url":
            image = p.get("image_url")
            part = _media_part(image.get("url", "") if isinstance(image, dict) else str(image or ""))
            parts.extend([part] if part else [])
        elif media and kind == "input_audio":
            audio = p.get("input_audio") or {}
            mime = "audio/" + str(audio.get("format") or "wav")
            parts.append({"inlineData": {"mimeType": mime, "data": audio.get("data", "")}})
        elif media and kind == "file" and str((p.get("file") or {}).get("file_data", "")).startswith("data:"):
            part = _media_part(p["file"]["file_data"])
            parts.extend([part] if part else [])
    return parts


def assistant_parts(m: dict[str, Any], model: str = "", thoughts: bool = False) -> list[dict[str, Any]]:
    """Canonical assistant message -> Gemini parts: [thought text if ``thoughts``],
    text, functionCalls; the first signature goes on the first call (else the first
    part); Gemini 3 calls without one get the documented skip sentinel."""
    parts: list[dict[str, Any]] = (
        [{"text": m["reasoning_content"], "thought": True}] if thoughts and m.get("reasoning_content") else []
    )
    parts += _content_parts(m.get("content"), media=False)
    calls: list[dict[str, Any]] = []
    for tc in m.get("tool_calls") or ():
        fn = tc.get("function") or {}
        call: dict[str, Any] = {"name": fn.get("name") or "", "args": parse_args(fn.get("arguments"))}
        if tc.get("id"):
            call["id"] = tc["id"]
        calls.append({"functionCall": call})
    blocks = m.get("thinking_blocks") or ()
    sigs = [b["signature"] for b in blocks if b.get("type") == "thinking" and b.get("signature")]
    target = calls[0] if calls else (parts[0] if parts else None)
    if target is not None and sigs:
        target["thoughtSignature"] = sigs[0]
    elif calls and re.match(r"(models/)?gemini-3", model):
        calls[0]["thoughtSignature"] = SKIP_SIGNATURE
    return parts + calls


def _tool_result(content: Any) -> Any:
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
    if not isinstance(content, str):
        return content
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content


def _function_response(m: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    cid = m.get("tool_call_id")
    name = names.get(cid or "") or m.get("name") or "unknown_function"
    # a failed call's result goes under "error", the key Gemini's docs give for failures
    key = "error" if m.get("is_error") else "result"
    resp: dict[str, Any] = {"name": name, "response": {key: _tool_result(m.get("content"))}}
    if cid:
        resp["id"] = cid
    return {"functionResponse": resp}


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": list(parts)})


def _contents(messages: list[dict[str, Any]], model: str) -> tuple[list, list]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name
    # leading system messages -> systemInstruction; later ones folded into the user turns (in place)
    for m in fold_into_user_turns(messages):
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_content_parts(m.get("content"), media=False))
        elif role == "assistant":
            for tc in m.get("tool_calls") or ():
                names[tc.get("id") or ""] = (tc.get("function") or {}).get("name") or ""
            _append(contents, "model", assistant_parts(m, model))
        elif role == "tool":  # images of a result (Claude Code's Read of a picture) follow its response
            content = m.get("content")
            media = [p for p in content if p.get("type") != "text"] if isinstance(content, list) else []
            _append(contents, "user", [_function_response(m, names), *_content_parts(media)])
        else:
            _append(contents, "user", _content_parts(m.get("content")))
    for turn in contents:  # function responses open their turn, right after the calls they answer
        parts = turn["parts"]
        if turn["role"] == "user" and len(parts) > 1 and any("functionResponse" in p for p in parts[1:]):
            parts.sort(key=lambda p: "functionResponse" not in p)
    return system, contents


def _tools(tools: Any) -> list[dict[str, Any]]:
    decls = []
    for t in tools or ():
        if t.get("type", "function") != "function":
            continue
        fn = t.get("function") or {}
        decl: dict[str, Any] = {"name": fn.get("name") or ""}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = clean_schema(fn.get("parameters"))
        # an OBJECT without properties is rejected: a no-argument tool has no parameters
        if isinstance(params, dict) and (params.get("properties") or params.get("type") not in (None, "object")):
            decl["parameters"] = params
        decls.append(decl)
    return [{"functionDeclarations": decls}] if decls else []


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, str):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "any": "ANY"}.get(choice)
        return {"functionCallingConfig": {"mode": mode}} if mode else None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name:
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return None


def _thinking_config(req: dict[str, Any]) -> dict[str, Any] | None:
    thinking = req.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "disabled":
        return {"thinkingBudget": 0}
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        budget = thinking.get("budget_tokens")
        budget = -1 if budget is None else min(int(budget), MAX_THINKING_BUDGET)
        return {"thinkingBudget": budget, "includeThoughts": True}
    effort = req.get("reasoning_effort")
    if effort == "none":
        return {"thinkingBudget": 0}
    if effort in _EFFORT_BUDGET:
        return {"thinkingBudget": _EFFORT_BUDGET[effort], "includeThoughts": True}
    return None


_GEN_KEYS = (
    ("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"),
    ("max_tokens", "maxOutputTokens"), ("n", "candidateCount"), ("seed", "seed"),
    ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
    ("top_logprobs", "logprobs"),
)  # fmt: skip


def _generation_config(req: dict[str, Any]) -> dict[str, Any]:
    gen = {gk: req[ck] for ck, gk in _GEN_KEYS if req.get(ck) is not None}
    if "maxOutputTokens" not in gen and req.get("max_completion_tokens") is not None:
        gen["maxOutputTokens"] = req["max_completion_tokens"]
    stop = req.get("stop")
    if stop:
        gen["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if req.get("logprobs"):
        gen["responseLogprobs"] = True
    fmt = req.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        gen["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            gen["responseSchema"] = clean_schema(schema)
    thinking = _thinking_config(req)
    if thinking:
        gen["thinkingConfig"] = thinking
    return gen


def request_from_canonical(req: dict[str, Any], model: str) -> dict[str, Any]:
    """Canonical request -> generateContent body (the model goes in the URL)."""
    system, contents = _contents(req.get("messages") or [], model)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = _tools(req.get("tools"))
    if tools:
        body["tools"] = tools
        config = _tool_config(req.get("tool_choice"))
        if config:
            body["toolConfig"] = config
    gen = _generation_config(req)
    if gen:
        body["generationConfig"] = gen
    return body


# ---------------------------------------------------------------- provider side: response


def model_message(parts: list[dict[str, Any]], make_id: Any) -> dict[str, Any]:
    """Gemini model parts -> canonical assistant message; ``make_id(functionCall, n)``
    names calls.  The kept signature is the first call's, else the last one seen."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    call_sig = last_sig = None
    for part in parts:
        sig = g(part, "thoughtSignature")
        last_sig = sig or last_sig
        fc = g(part, "functionCall")
        if fc:
            call_sig = sig if not calls else call_sig
            args = orjson.dumps(g(fc, "args", {})).decode()
            fn = {"name": g(fc, "name", ""), "arguments": args}
            calls.append({"id": make_id(fc, len(calls)), "type": "function", "function": fn})
        elif g(part, "text") is not None:
            (thoughts if part.get("thought") else texts).append(part["text"])
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        msg["tool_calls"] = calls
    if thoughts:
        msg["reasoning_content"] = "".join(thoughts)
    if call_sig or last_sig:
        block = {"type": "thinking", "thinking": "".join(thoughts), "signature": call_sig or last_sig}
        msg["thinking_blocks"] = [block]
    return msg


def _choice(cand: dict[str, Any], position: int) -> dict[str, Any]:
    index = g(cand, "index", position)

    def make_id(fc: dict[str, Any], n: int) -> str:
        return g(fc, "id") or call_id(g(fc, "name", ""), g(fc, "args", {}), index, n)

    message = model_message(g(g(cand, "content", {}), "parts", []), make_id)
    reason = finish_reason(g(cand, "finishReason"), bool(message.get("tool_calls")))
    return {"index": index, "message": message, "finish_reason": reason}


def response_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    """GenerateContentResponse -> chat.completion (one choice per candidate)."""
    choices = [_choice(c, i) for i, c in enumerate(g(body, "candidates", []))]
    if not choices:
        blocked = g(g(body, "promptFeedback", {}), "blockReason")
        reason = "content_filter" if blocked else "stop"
        choices = [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": reason}]
    out: dict[str, Any] = {
        "id": g(body, "responseId") or "chatcmpl-gemini",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": g(body, "modelVersion", ""),
        "choices": choices,
    }
    usage = usage_from_body(body)
    if usage:
        out["usage"] = usage
    return out


def usage_from_body(body: dict[str, Any]) -> dict[str, Any] | None:
    return usage_from_metadata(g(body, "usageMetadata"))


def stream_decoder() -> Any:
    from .gemini_stream import StreamDecoderImpl

    return StreamDecoderImpl()


def usage_tap() -> Any:
    from .gemini_stream import UsageTapImpl

    return UsageTapImpl()


# ---------------------------------------------------------------- embeddings


def embeddings_request_from_canonical(req: dict[str, Any], model: str) -> dict[str, Any]:
    """OpenAI embeddings request -> batchEmbedContents body."""
    inputs = req.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
        raise BadRequest("Gemini embeddings take a string or a list of strings (no token arrays)", param="input")
    name = model if model.startswith("models/") else "models/" + model
    requests = []
    for text in inputs:
        item: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if req.get("dimensions"):
            item["outputDimensionality"] = req["dimensions"]
        requests.append(item)
    return {"requests": requests}


def embeddings_response_to_canonical(
    body: dict[str, Any], model: str, encoding_format: str | None = None
) -> dict[str, Any]:
    """batchEmbedContents response -> OpenAI embeddings response."""
    data = []
    for i, emb in enumerate(g(body, "embeddings", [])):
        values: Any = g(emb, "values", [])
        if encoding_format == "base64":
            values = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": i, "embedding": values})
    # Gemini's batchEmbedContents reports no token usage: zeros, not a guess.
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}


# ---------------------------------------------------------------- front door: request


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content] if "text" in content else g(content, "parts", [])
    return "".join(g(p, "text", "") for p in content or () if not p.get("thought"))


def _canonical_media(part: dict[str, Any]) -> dict[str, Any] | None:
    inline, file = g(part, "inlineData"), g(part, "fileData")
    if inline:
        mime = g(inline, "mimeType", "application/octet-stream")
        url = f"data:{mime};base64,{g(inline, 'data', '')}"
        if not mime.startswith("image/"):
            return {"type": "file", "file": {"file_data": url}}
        return {"type": "image_url", "image_url": {"url": url}}
    if file:
        return {"type": "image_url", "image_url": {"url": g(file, "fileUri", "")}}
    return None


class _CallIds:
    """Pairs functionResponse parts with the ids of earlier functionCall parts."""

    def __init__(self) -> None:
        self.pending: dict[str, list[str]] = {}
        self.n = 0

    def call(self, fc: dict[str, Any]) -> str:
        name = g(fc, "name", "")
        cid = g(fc, "id") or call_id(name, g(fc, "args", {}), 0, self.n)
        self.n += 1
        self.pending.setdefault(name, []).append(cid)
        return cid

    def response(self, fr: dict[str, Any]) -> str:
        name = g(fr, "name", "")
        queue = self.pending.get(name) or []
        cid = g(fr, "id") or (queue[0] if queue else call_id(name, None, 0, self.n))
        if cid in queue:
            queue.remove(cid)
        return cid


def _tool_message(fr: dict[str, Any], ids: _CallIds) -> dict[str, Any]:
    response = g(fr, "response", {})
    result = response.get("result", response.get("output", response)) if isinstance(response, dict) else response
    content = result if isinstance(result, str) else orjson.dumps(result).decode()
    return {"role": "tool", "tool_call_id": ids.response(fr), "name": g(fr, "name", ""), "content": content}


def _user_messages(parts: list[dict[str, Any]], ids: _CallIds) -> list[dict[str, Any]]:
    tools, content = [], []
    for part in parts:
        fr = g(part, "functionResponse")
        if fr:
            tools.append(_tool_message(fr, ids))
        elif g(part, "text") is not None:
            content.append({"type": "text", "text": part["text"]})
        else:
            media = _canonical_media(part)
            content.extend([media] if media else [])
    if len(content) == 1 and content[0]["type"] == "text":
        return [*tools, {"role": "user", "content": content[0]["text"]}]
    return tools + ([{"role": "user", "content": content}] if content else [])


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = g(body, "systemInstruction")
    if system:
        messages.append({"role": "system", "content": _text_of(system)})
    contents = g(body, "contents", [])
    if isinstance(contents, dict):
        contents = [contents]
    ids = _CallIds()
    for content in contents:
        parts = g(content, "parts", [])
        if g(content, "role") == "model":
            messages.append(model_message(parts, lambda fc, n: ids.call(fc)))
        else:  # "user", or the legacy "function" role
            messages.extend(_user_messages(parts, ids))
    return messages


def _canonical_tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in tools or ():
        for decl in g(tool, "functionDeclarations", []):
            fn = {"name": g(decl, "name", ""), "description": g(decl, "description", "")}
            params = g(decl, "parameters") or g(decl, "parametersJsonSchema")
            fn["parameters"] = params or {"type": "object", "properties": {}}
            out.append({"type": "function", "function": fn})
    return out


def _canonical_tool_choice(config: Any) -> Any:
    fcc = g(config, "functionCallingConfig", {})
    mode = str(g(fcc, "mode", "")).upper()
    names = g(fcc, "allowedFunctionNames", [])
    if mode == "ANY" and len(names) == 1:
        return {"type": "function", "function": {"name": names[0]}}
    return {"ANY": "required", "NONE": "none", "AUTO": "auto", "VALIDATED": "auto"}.get(mode)


def _canonical_thinking(tc: Any, req: dict[str, Any]) -> None:
    budget, level = g(tc, "thinkingBudget"), g(tc, "thinkingLevel")
    if budget == 0:
        req["thinking"] = {"type": "disabled"}
    elif isinstance(budget, int) and budget > 0:
        req["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif level:
        req["reasoning_effort"] = str(level).lower()
    elif budget == -1:
        req["reasoning_effort"] = "medium"


def _canonical_generation(gen: dict[str, Any], req: dict[str, Any]) -> None:
    for ck, gk in _GEN_KEYS:
        if g(gen, gk) is not None:
            req[ck] = g(gen, gk)
    if g(gen, "stopSequences"):
        req["stop"] = list(g(gen, "stopSequences"))
    if g(gen, "responseLogprobs"):
        req["logprobs"] = True
    schema = g(gen, "responseSchema") or g(gen, "responseJsonSchema")
    if schema:
        req["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    elif g(gen, "responseMimeType") == "application/json":
        req["response_format"] = {"type": "json_object"}
    if g(gen, "thinkingConfig"):
        _canonical_thinking(g(gen, "thinkingConfig"), req)


def request_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    """generateContent body -> canonical request.  The model normally comes from the
    URL (the front door sets ``model`` and ``stream``); ``body["model"]`` is read too."""
    req: dict[str, Any] = {}
    model = g(body, "model")
    if model:
        req["model"] = str(model).removeprefix("models/")
    req["messages"] = _messages(body)
    tools = _canonical_tools(g(body, "tools"))
    if tools:
        req["tools"] = tools
        choice = _canonical_tool_choice(g(body, "toolConfig"))
        if choice:
            req["tool_choice"] = choice
    _canonical_generation(g(body, "generationConfig", {}), req)
    if body.get("stream"):
        req["stream"] = True
    return req


# ---------------------------------------------------------------- front door: response

GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}


def response_from_canonical(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """Canonical response -> GenerateContentResponse."""
    candidates = []
    for i, choice in enumerate(resp.get("choices") or ()):
        cand: dict[str, Any] = {
            "content": {"role": "model", "parts": assistant_parts(choice.get("message") or {}, thoughts=True)},
            "finishReason": GEMINI_FINISH.get(choice.get("finish_reason") or "stop", "STOP"),
            "index": choice.get("index", i),
        }
        candidates.append(cand)
    out: dict[str, Any] = {"candidates": candidates}
    if resp.get("usage"):
        out["usageMetadata"] = usage_metadata(resp["usage"])
    out["modelVersion"] = model
    out["responseId"] = resp.get("id") or ""
    return out


def stream_encoder(model: str, request_id: str) -> Any:
    from .gemini_stream import StreamEncoderImpl

    return StreamEncoderImpl(model, request_id)


def merge_defaults(body: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A passthrough body with the deployment's defaults, placed in ``generationConfig``."""
    gen = {gk: defaults[ck] for ck, gk in _GEN_KEYS if ck in defaults}
    if not gen:
        return body
    current = body.get("generationConfig") or body.get("generation_config") or {}
    out = {k: v for k, v in body.items() if k not in ("generationConfig", "generation_config")}
    out["generationConfig"] = {**gen, **current}
    return out


# canonical request parameters this dialect can express (forwarding checks the rest against drop_params)
SUPPORTED_PARAMS = frozenset({
    "max_tokens", "temperature", "top_p", "top_k", "stop", "tools", "tool_choice", "n", "seed",
    "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "response_format", "thinking",
    "reasoning_effort", "user", "metadata", "parallel_tool_calls",
})
