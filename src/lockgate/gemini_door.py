"""The Gemini-native front door: ``POST /v1beta/models/{model}:{method}``.

Serves ``generateContent``, ``streamGenerateContent`` (``?alt=sse``) and
``countTokens`` in Google's wire format (``dialects.gemini``), so the
``google-genai`` SDK can use the gateway as its base URL against any
deployment.  ``/v1/models/...`` is accepted too.

The model group comes from the URL (``models/`` stripped): the front door sets
``ctx.model`` (and ``ctx.stream`` from the method) before the pipeline runs,
and ``pipeline.parse`` keeps a model the route already set.  The key may come
as ``x-goog-api-key``, ``?key=`` or ``Authorization: Bearer``.  Errors are
Google's ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs

import orjson

from . import forwarding, pipeline
from .context import RequestContext
from .dialects import gemini
from .errors import BadRequest, LockgateError, NotFound
from .gateway import Gateway
from .http import Receive, Scope, Send, read_body

# method -> (route name, stream)
METHODS = {
    "generateContent": ("generate", False),
    "streamGenerateContent": ("generate", True),
    "countTokens": ("gemini_count_tokens", False),
}
PREFIXES = ("/v1beta/models/", "/models/")  # "/v1/models/..." arrives here as "/models/..."


def match(path: str) -> tuple[str, str] | None:
    """``(model, method)`` of a Gemini model path, else None."""
    for prefix in PREFIXES:
        if path.startswith(prefix):
            model, sep, method = path[len(prefix):].rpartition(":")
            if sep and model:
                return model, method
    return None


async def handle(gw: Gateway, scope: Scope, receive: Receive, send: Send, model: str, method: str) -> None:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "key" in query and "x-goog-api-key" not in headers:
        headers["x-goog-api-key"] = query["key"][0]
    route, stream = METHODS.get(method, ("generate", False))
    ctx = RequestContext(
        request_id=uuid.uuid4().hex, route=route, dialect=gemini, headers=headers,
        client_ip=(scope.get("client") or (None,))[0], model=model, stream=stream,
    )
    try:
        _check(method, query)
        raw = await read_body(receive, gw.settings.max_request_body, headers.get("content-length"))
    except LockgateError as err:
        await pipeline.respond_error(gw, ctx, send, err)
        return
    await pipeline.handle(gw, ctx, raw, send, receive)


def _check(method: str, query: dict[str, list[str]]) -> None:
    if method not in METHODS:
        raise NotFound(f"method {method!r} is not served here; use generateContent, streamGenerateContent"
                       " or countTokens")
    if method == "streamGenerateContent" and query.get("alt") != ["sse"]:
        raise BadRequest("streamGenerateContent is served as server-sent events only: add ?alt=sse to the URL")


async def count_tokens(gw: Gateway, ctx: RequestContext, send: Send) -> None:
    """Exact from a Gemini deployment (forwarded); estimated (about 4 characters a token) otherwise."""
    dep, provider = ctx.deployment, ctx.provider
    assert dep is not None and provider is not None
    url = provider.count_tokens_url(dep) if ctx.passthrough else None
    if url:
        body = provider.count_tokens_body(native_count_body(ctx.body, dep.model), dep)
        raw = await forwarding._post(gw, ctx, url, body)
        ctx.response_headers.append((b"x-lockgate-token-count", b"exact"))
    else:
        try:
            req = gemini.request_to_canonical(ctx.body.get("generateContentRequest") or ctx.body)
        except forwarding.MALFORMED as exc:
            raise forwarding.malformed_body(exc) from None
        raw = orjson.dumps({"totalTokens": forwarding.estimate_tokens(req)})
        ctx.response_headers.append((b"x-lockgate-token-count", b"estimated"))
    ctx.status = 200
    await forwarding.send_answer(send, ctx, raw)


def native_count_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The countTokens body for the deployment: its model inside ``generateContentRequest``, none on top."""
    out = {k: v for k, v in body.items() if k != "model"}
    inner = out.get("generateContentRequest")
    if isinstance(inner, dict):
        out["generateContentRequest"] = {**inner, "model": "models/" + model.removeprefix("models/")}
    return out
