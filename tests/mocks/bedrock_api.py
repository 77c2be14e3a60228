"""Mock of Amazon Bedrock Runtime (``bedrock-runtime.{region}.amazonaws.com``).

Serves ``POST /model/{modelId}/converse``, ``/converse-stream``, ``/invoke`` and
``/invoke-with-response-stream`` with the model id URL-encoded in the path.
Every request must carry a valid SigV4 ``Authorization`` header: the mock
recomputes the signature with botocore from the request it received (raw path,
signed headers, body) and the known test secret, and answers 403
``InvalidSignatureException`` / ``UnrecognizedClientException`` as AWS does.

Errors are AWS REST-JSON: ``{"message": ...}`` with ``x-amzn-ErrorType``.
Streams use AWS event-stream binary framing (encoded by ``frame`` below, from
the format's definition); InvokeModel stream events are ``chunk`` messages
whose payload is ``{"bytes": base64(<Anthropic stream event>)}``.

Triggers (last user text): those of ``tests/mocks/__init__`` plus
``TRIGGER_MAXTOKENS`` (stopReason max_tokens), ``TRIGGER_GUARDRAIL``
(guardrail_intervened) and ``TRIGGER_STREAMEXC`` (a throttlingException
message in the middle of a stream).
"""

from __future__ import annotations

import base64
import hmac
import re
import struct
import uuid
import zlib
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from . import (
    CACHED_TOKENS,
    COMPLETION_TOKENS,
    MOCK_TEXT,
    PROMPT_TOKENS,
    Received,
    Recorder,
    last_user_text,
    trigger,
)
from .anthropic_api import THINKING_SIGNATURE, THINKING_TEXT
from .anthropic_api import _answer as anthropic_answer
from .anthropic_api import _stream_events as anthropic_sse_events

ACCESS_KEY_ID = "AKIAMOCKBEDROCK00001"
SECRET_KEY = "mock/bedrock/secret+key/0123456789abcdefXYZ"
TEMP_ACCESS_KEY_ID = "ASIAMOCKBEDROCK00002"
TEMP_SECRET_KEY = "mock/temporary/secret/key/ABCDEFGHIJ012345"
SESSION_TOKEN = "mock-session-token-FwoGZXIvYXdzEJr"
REGION = "us-east-1"
RECORDER = web.AppKey("recorder", Recorder)
_ROUTE = re.compile(r"^/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream)$")
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                   r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")
_CONVERSE_KEYS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                  "additionalModelRequestFields", "additionalModelResponseFieldPaths", "promptVariables",
                  "requestMetadata", "performanceConfig"}
_BLOCK_KEYS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent", "cachePoint",
               "reasoningContent"}


def create_app(recorder: Recorder) -> web.Application:
    app = web.Application()
    app[RECORDER] = recorder
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


# ---------------------------------------------------------------- wire plumbing


def aws_error(status: int, name: str, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"message": message}), content_type="application/json",
                        headers={"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                                 "x-amzn-RequestId": str(uuid.uuid4())})


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    raw_headers = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
        for k, v in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(raw_headers) + len(payload) + 4, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event: str, payload: dict[str, Any]) -> bytes:
    padded = {**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGH"[: 5 + len(event) % 20]}
    return frame({":event-type": event, ":content-type": "application/json", ":message-type": "event"},
                 orjson.dumps(padded))


def exception_frame(name: str, message: str) -> bytes:
    return frame({":exception-type": name, ":content-type": "application/json", ":message-type": "exception"},
                 orjson.dumps({"message": message}))


def check_signature(request: web.Request, body: bytes) -> web.Response | None:
    """Recompute the SigV4 signature of the received request; None when it is valid."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = _AUTH.match(request.headers.get("authorization", ""))
    amz_date = request.headers.get("x-amz-date", "")
    if not match or not amz_date:
        return aws_error(403, "IncompleteSignatureException", "Authorization header requires a valid SigV4 signature.")
    key_id, day, region, service, signed, signature = match.groups()
    secrets = {ACCESS_KEY_ID: (SECRET_KEY, None), TEMP_ACCESS_KEY_ID: (TEMP_SECRET_KEY, SESSION_TOKEN)}
    if key_id not in secrets:
        return aws_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    secret, token = secrets[key_id]
    if token is not None and request.headers.get("x-amz-security-token") != token:
        return aws_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    sent_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    if abs((datetime.now(timezone.utc) - sent_at).total_seconds()) > 300 or day != amz_date[:8]:
        return aws_error(403, "InvalidSignatureException", "Signature expired or date mismatch.")
    names = signed.split(";")
    if region != REGION or service != "bedrock" or not {"host", "x-amz-date"} <= set(names):
        return aws_error(403, "InvalidSignatureException", "Credential should be scoped to a valid region/service.")
    signed_headers = {name: request.headers.get(name, "") for name in names}
    aws_request = AWSRequest(method=request.method, url=f"http://{request.host}{request.raw_path}", data=body,
                             headers=signed_headers)
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key_id, secret, token), service, region)
    expected = signer.signature(signer.string_to_sign(aws_request, signer.canonical_request(aws_request)), aws_request)
    if not hmac.compare_digest(expected, signature):
        return aws_error(403, "InvalidSignatureException", "The request signature we calculated does not match "
                         "the signature you provided. Check your AWS Secret Access Key and signing method.")
    return None


async def _dispatch(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    request.app[RECORDER].requests.append(Received(
        path=request.raw_path, query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()}, body=body,
    ))
    route = _ROUTE.match(request.raw_path)
    if request.method != "POST" or route is None:
        return aws_error(404, "UnknownOperationException", "Unknown operation")
    denied = check_signature(request, raw)
    if denied is not None:
        return denied
    if not isinstance(body, dict):
        return aws_error(400, "ValidationException", "Malformed input request, please reformat your input and try again.")
    model, operation = unquote(route.group(1)), route.group(2)
    if operation.startswith("converse"):
        return await _converse(request, model, body, operation == "converse-stream")
    if "titan-embed" in model or "cohere.embed" in model:
        return _embed(model, body)
    return await _invoke(request, model, body, operation == "invoke-with-response-stream")


def _trigger_error(text: str) -> web.Response | None:
    name = trigger(text)
    if name == "429":
        return aws_error(429, "ThrottlingException", "Too many requests, please wait before trying again.")
    if name == "400":
        return aws_error(400, "ValidationException", "mock invalid request")
    if name == "500":
        return aws_error(500, "InternalServerException", "mock internal error")
    return None


async def _write_frames(request: web.Request, frames: list[bytes]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream",
                                       "x-amzn-RequestId": str(uuid.uuid4())})
    await resp.prepare(request)
    for data in frames:  # every message split in two writes: the parser must be incremental
        await resp.write(data[:7])
        await resp.write(data[7:])
    await resp.write_eof()
    return resp


# ---------------------------------------------------------------- Converse


def _converse_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            return " ".join(b["text"] for b in msg.get("content") or () if "text" in b)
    return ""


def validate_converse(body: dict[str, Any]) -> str | None:
    """What real Converse rejects with a ValidationException (the parts a gateway could get wrong)."""
    extra = set(body) - _CONVERSE_KEYS
    if extra:
        return f"extraneous key [{sorted(extra)[0]}] is not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or messages[0].get("role") != "user":
        return "A conversation must start with a user message."
    tool_ids: set[str] = set()
    for i, msg in enumerate(messages):
        if i and msg.get("role") == messages[i - 1].get("role"):
            return "A conversation must alternate between user and assistant roles."
        for block in msg.get("content") or ():
            if len(block) != 1 or next(iter(block)) not in _BLOCK_KEYS:
                return f"messages.{i}.content: each block must hold exactly one member, got {sorted(block)}"
            problem = _check_block(block, tool_ids)
            if problem:
                return problem
    if tool_ids and not (body.get("toolConfig") or {}).get("tools"):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return "inferenceConfig.maxTokens must be a positive integer"
    return None


def _check_block(block: dict[str, Any], tool_ids: set[str]) -> str | None:
    if "image" in block:
        image = block["image"]
        if image.get("format") not in ("png", "jpeg", "gif", "webp"):
            return "image.format must be png, jpeg, gif or webp"
        try:
            base64.b64decode(image["source"]["bytes"], validate=True)
        except (KeyError, ValueError, TypeError):
            return "image.source.bytes must be base64"
    if "toolUse" in block:
        use = block["toolUse"]
        if not use.get("toolUseId") or not use.get("name") or not isinstance(use.get("input"), dict):
            return "toolUse needs toolUseId, name and input"
        tool_ids.add(use["toolUseId"])
    if "toolResult" in block:
        result = block["toolResult"]
        if result.get("toolUseId") not in tool_ids:
            return "toolResult.toolUseId does not match a toolUse of the previous turn"
        if not all(len(c) == 1 and next(iter(c)) in ("text", "json", "image", "document") for c in result["content"]):
            return "toolResult.content blocks must be text, json, image or document"
    return None


def _converse_answer(body: dict[str, Any], text: str) -> tuple[list[dict[str, Any]], str]:
    name = trigger(text)
    if name == "TOOL":
        tools = (body.get("toolConfig") or {}).get("tools") or []
        tool = next((t["toolSpec"]["name"] for t in tools if "toolSpec" in t), "get_weather")
        return [{"toolUse": {"toolUseId": "tooluse_" + uuid.uuid4().hex[:22], "name": tool,
                             "input": {"city": "Paris"}}}], "tool_use"
    blocks: list[dict[str, Any]] = []
    if name == "THINK":
        blocks.append({"reasoningContent": {"reasoningText": {"text": THINKING_TEXT, "signature": THINKING_SIGNATURE}}})
    blocks.append({"text": MOCK_TEXT})
    if "TRIGGER_MAXTOKENS" in text:
        return blocks, "max_tokens"
    if "TRIGGER_GUARDRAIL" in text:
        return [{"text": "Sorry, the model cannot answer this question."}], "guardrail_intervened"
    return blocks, "end_turn"


def converse_usage() -> dict[str, int]:
    return {"inputTokens": PROMPT_TOKENS - CACHED_TOKENS, "outputTokens": COMPLETION_TOKENS,
            "totalTokens": PROMPT_TOKENS + COMPLETION_TOKENS, "cacheReadInputTokens": CACHED_TOKENS,
            "cacheWriteInputTokens": 0}


async def _converse(request: web.Request, model: str, body: dict[str, Any], stream: bool) -> web.StreamResponse:
    problem = validate_converse(body)
    if problem:
        return aws_error(400, "ValidationException", problem)
    text = last_user_text([_converse_text(body)])
    err = _trigger_error(text)
    if err is not None:
        return err
    blocks, stop = _converse_answer(body, text)
    if not stream:
        answer = {"output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop,
                  "usage": converse_usage(), "metrics": {"latencyMs": 42}}
        return web.Response(body=orjson.dumps(answer), content_type="application/json",
                            headers={"x-amzn-RequestId": str(uuid.uuid4())})
    frames = [event_frame("messageStart", {"role": "assistant"})]
    for i, block in enumerate(blocks):
        frames += _converse_block_frames(i, block)
        if "TRIGGER_STREAMEXC" in text:
            return await _write_frames(request, frames + [exception_frame("throttlingException", "Too many tokens")])
    frames.append(event_frame("messageStop", {"stopReason": stop}))
    frames.append(event_frame("metadata", {"usage": converse_usage(), "metrics": {"latencyMs": 42}}))
    return await _write_frames(request, frames)


def _converse_block_frames(index: int, block: dict[str, Any]) -> list[bytes]:
    frames = []
    if "toolUse" in block:
        use = block["toolUse"]
        frames.append(event_frame("contentBlockStart", {"contentBlockIndex": index, "start": {
            "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
        args = orjson.dumps(use["input"]).decode()
        deltas: list[dict[str, Any]] = [{"toolUse": {"input": args[:8]}}, {"toolUse": {"input": args[8:]}}]
    elif "reasoningContent" in block:
        reasoning = block["reasoningContent"]["reasoningText"]
        half = len(reasoning["text"]) // 2
        deltas = [{"reasoningContent": {"text": reasoning["text"][:half]}},
                  {"reasoningContent": {"text": reasoning["text"][half:]}},
                  {"reasoningContent": {"signature": reasoning["signature"]}}]
    else:
        deltas = [{"text": block["text"][:6]}, {"text": block["text"][6:]}]
    frames += [event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": d}) for d in deltas]
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
    return frames


# ---------------------------------------------------------------- InvokeModel (Anthropic Messages on Bedrock)


def _anthropic_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            return " ".join(b.get("text", "") for b in content or () if b.get("type") == "text")
    return ""


async def _invoke(request: web.Request, model: str, body: dict[str, Any], stream: bool) -> web.StreamResponse:
    if body.get("anthropic_version") != "bedrock-2023-05-31":
        return aws_error(400, "ValidationException", "anthropic_version: Invalid value")
    for key in ("model", "stream"):
        if key in body:
            return aws_error(400, "ValidationException", f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("messages"), list) or not isinstance(body.get("max_tokens"), int):
        return aws_error(400, "ValidationException", "messages and max_tokens are required")
    text = _anthropic_text(body)
    err = _trigger_error(text)
    if err is not None:
        return err
    name = trigger(text)
    blocks, stop = anthropic_answer(body, name)
    usage = {"input_tokens": PROMPT_TOKENS - CACHED_TOKENS, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": CACHED_TOKENS, "output_tokens": COMPLETION_TOKENS}
    message = {"id": "msg_bdrk_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant",
               "model": "claude-sonnet-4-5-20250929", "content": blocks, "stop_reason": stop,
               "stop_sequence": None, "usage": usage}
    if not stream:
        return web.Response(body=orjson.dumps(message), content_type="application/json",
                            headers={"x-amzn-RequestId": str(uuid.uuid4()),
                                     "X-Amzn-Bedrock-Input-Token-Count": str(PROMPT_TOKENS)})
    frames = []
    for sse in anthropic_sse_events(message, False):
        event = orjson.loads(sse.split(b"\ndata: ", 1)[1])
        if event["type"] == "ping":
            continue
        if event["type"] == "message_stop":
            event["amazon-bedrock-invocationMetrics"] = {
                "inputTokenCount": PROMPT_TOKENS, "outputTokenCount": COMPLETION_TOKENS,
                "invocationLatency": 42, "firstByteLatency": 21}
        frames.append(frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
                            orjson.dumps({"bytes": base64.b64encode(orjson.dumps(event)).decode(), "p": "abcd"})))
        if "TRIGGER_STREAMEXC" in text and event["type"] == "content_block_delta":
            frames.append(exception_frame("throttlingException", "Too many tokens"))
            break
    return await _write_frames(request, frames)


# ---------------------------------------------------------------- embeddings


def vector(text: str, dims: int) -> list[float]:
    """A deterministic vector of the text (so tests can check order)."""
    seed = zlib.crc32(text.encode())
    return [round(((seed >> (i % 24)) % 1000) / 1000.0, 3) for i in range(dims)]


def _embed(model: str, body: dict[str, Any]) -> web.Response:
    if "titan-embed" in model:
        if set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"} or not isinstance(
                body.get("inputText"), str):
            return aws_error(400, "ValidationException", "Malformed input request: inputText is required")
        dims = body.get("dimensions", 1024)
        if dims not in (256, 512, 1024):
            return aws_error(400, "ValidationException", "dimensions must be 256, 512 or 1024")
        answer: dict[str, Any] = {"embedding": vector(body["inputText"], dims),
                                  "inputTextTokenCount": len(body["inputText"].split())}
    else:
        texts = body.get("texts")
        if not isinstance(texts, list) or body.get("input_type") not in (
                "search_document", "search_query", "classification", "clustering"):
            return aws_error(400, "ValidationException", "Malformed input request: texts and input_type are required")
        answer = {"id": str(uuid.uuid4()), "texts": texts, "response_type": "embeddings_floats",
                  "embeddings": [vector(t, 16) for t in texts]}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")
