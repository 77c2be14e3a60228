"""The ``call`` stage: forward to the provider, answer in the client's dialect.

One attempt against one deployment (``attempts.call`` loops over attempts).
Three paths, chosen in ``bind``:

* passthrough (client dialect == provider dialect): the client's body goes out
  with only the model name (and credentials) rewritten; the provider's bytes
  come back as they are, tapped for usage, never rebuilt;
* translated: client dialect -> canonical -> provider dialect, and back;
* local: the in-process mock provider answers in the canonical form.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson

from . import tokens
from .context import RequestContext
from .dialects import openai_chat, openai_completions
from .dialects.output_limits import clamp_max_tokens
from .errors import BadRequest, LockgateError, UpstreamError, describe_body, is_error_body
from .gateway import Gateway
from .http import Receive, Send, send_bytes, stream_events
from .transport.client import UpstreamReply, UpstreamStream, too_large
from .transport.sse import encode_event

if TYPE_CHECKING:
    from .config import Deployment
    from .stages import ChunkFilter, Finisher, Tap

log = logging.getLogger("lockgate")


def bind(gw: Gateway, ctx: RequestContext, dep: Deployment) -> None:
    """Make ``dep`` the deployment of this attempt and choose passthrough or translation."""
    provider = gw.providers["mock" if dep.mock_response is not None else dep.provider].for_deployment(dep)
    ctx.deployment = dep
    ctx.provider = provider
    ctx.drop_params = gw.settings.drop_params
    ctx.passthrough = passes_through(ctx, provider) and not ctx.force_translate


def passes_through(ctx: RequestContext, provider: Any) -> bool:
    """Same wire format on both ends.  The Responses API rides on providers that serve it."""
    if provider.local:
        return False
    if ctx.route == "responses":
        return provider.supports_responses
    if ctx.route == "completions":  # legacy text completions: native where the provider serves them
        return ctx.deployment is not None and provider.completions_url(ctx.deployment) is not None
    return provider.dialect is ctx.dialect


def request_url(ctx: RequestContext, stream: bool) -> str:
    provider, dep = ctx.provider, ctx.deployment
    assert provider is not None and dep is not None
    if ctx.route == "responses" and ctx.passthrough:
        return provider.responses_url(dep)
    if ctx.route == "completions" and ctx.passthrough:
        return provider.completions_url(dep) or ""
    return provider.chat_url(dep, stream)


async def call_once(gw: Gateway, ctx: RequestContext, send: Send, receive: Receive) -> None:
    if ctx.route == "embeddings":
        await _embeddings(gw, ctx, send)
    elif ctx.route == "count_tokens":
        await _count_tokens(gw, ctx, send)
    elif ctx.route == "gemini_count_tokens":
        from .gemini_door import count_tokens

        await count_tokens(gw, ctx, send)
    elif ctx.stream:
        await _stream(gw, ctx, send, receive)
    else:
        await _unary(gw, ctx, send)


# ---------------------------------------------------------------- building the upstream request


# what translation code raises on a field of an unexpected type or shape (plain code over untrusted JSON)
MALFORMED = (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError)


def malformed_body(exc: Exception) -> BadRequest:
    """The client's body could not be translated: a 400 naming what was wrong, logged without a traceback."""
    where = exc.__traceback__
    while where is not None and where.tb_next is not None:
        where = where.tb_next
    place = f"{where.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{where.tb_lineno}" if where else "?"
    log.warning("request body refused by translation: %s at %s", type(exc).__name__, place)
    detail = "nested too deeply" if isinstance(exc, RecursionError) else f"{type(exc).__name__}: {exc}"
    return BadRequest(f"the request body has a field of the wrong type or shape ({detail[:200]})",
                      code="invalid_request_body")


def upstream_body(ctx: RequestContext) -> dict[str, Any]:
    dep, provider = ctx.deployment, ctx.provider
    assert dep is not None and provider is not None
    try:
        if ctx.passthrough:
            merge = getattr(ctx.dialect, "merge_defaults", None)  # defaults in the dialect's own names
            body = {**(merge(ctx.body, dep.defaults) if merge else {**dep.defaults, **ctx.body}), "model": dep.model}
        else:
            canonical = clamp_max_tokens(supported_params(ctx, canonical_request(ctx)), dep.model,
                                         dep.model_info)
            body = provider.dialect.request_from_canonical(canonical, dep.model)
        return provider.body_from_headers(provider.prepare_body(body, dep, ctx.stream), ctx.headers)
    except MALFORMED as exc:
        raise malformed_body(exc) from None


def canonical_request(ctx: RequestContext) -> dict[str, Any]:
    assert ctx.deployment is not None
    try:
        canonical = {**ctx.deployment.defaults, **ctx.dialect.request_to_canonical(ctx.body)}
    except MALFORMED as exc:
        raise malformed_body(exc) from None
    if ctx.stream:  # the flag may come from the route (Gemini's :streamGenerateContent), not the body
        canonical["stream"] = True
    return canonical


# always understood: the message list itself and flags every dialect handles
_ALWAYS = frozenset({"model", "messages", "stream", "stream_options"})
# values that ask for nothing beyond the default, so no provider can be said to lack them
_NEUTRAL = {"n": 1, "parallel_tool_calls": True, "logprobs": False}


def supported_params(ctx: RequestContext, canonical: dict[str, Any]) -> dict[str, Any]:
    """Parameters the provider's dialect cannot express: dropped with ``drop_params``, else a 400 naming them."""
    provider, dep = ctx.provider, ctx.deployment
    assert provider is not None and dep is not None
    supported = getattr(provider.dialect, "SUPPORTED_PARAMS", None)
    if supported is None:
        return canonical
    extra = [k for k, v in canonical.items() if k not in supported and k not in _ALWAYS
             and v is not None and _NEUTRAL.get(k, object()) != v]
    if not extra:
        return canonical
    drop = dep.drop_params if dep.drop_params is not None else ctx.drop_params
    if drop:
        return {k: v for k, v in canonical.items() if k not in extra}
    raise BadRequest(f"{provider.name} does not support the parameter '{extra[0]}'; remove it, or set "
                     "drop_params: true (litellm_settings or the deployment) to drop it", param=extra[0])


async def upstream_headers(ctx: RequestContext, url: str, payload: bytes) -> dict[str, str]:
    provider, dep = ctx.provider, ctx.deployment
    assert provider is not None and dep is not None
    headers = provider.headers(dep)
    for name in provider.client_headers:
        value = ctx.headers.get(name)
        if value is not None:
            headers[name] = value
    if ctx.trace_headers is not None:  # otel_forward_traceparent: the attempt span as the provider's parent
        headers.update(ctx.trace_headers)
    if provider.signs:
        headers = await provider.sign(dep, url, headers, payload)
    return headers


def timeout_of(gw: Gateway, ctx: RequestContext) -> float:
    assert ctx.deployment is not None
    return ctx.deployment.timeout or gw.settings.request_timeout


# the error JSON shape of each client dialect (what may be relayed as it came)
_ERROR_SHAPES = {"openai": "openai", "openai_responses": "openai", "openai_completions": "openai",
                 "anthropic": "anthropic", "gemini": "google"}


def upstream_error(ctx: RequestContext, status: int, headers: dict[str, str], body: bytes) -> UpstreamError:
    """The provider's error status and body as the client's error.

    A 4xx keeps its status (and ``Retry-After``); a 5xx becomes a 502 whose message names the
    provider's status.  The provider's own body is relayed as it came only in passthrough, for a
    4xx, and when it is an error JSON of the client's dialect; anything else (plain text, HTML,
    empty, truncated JSON, another shape) is rendered in the client's dialect and never echoed.
    """
    provider = ctx.provider
    assert provider is not None
    original = body
    body = provider.normalize_error(status, headers, body)
    try:
        message, type_ = provider.dialect.parse_error(status, body)
    except (TypeError, ValueError, AttributeError, KeyError):  # odd types in an error body: not its message
        message, type_ = "", None
    if not (_json_object(original) and _error_json_of(provider, body)):  # say what came, never echo it
        message = f"provider {provider.name} answered {status} with {describe_body(original, headers.get('content-type'))}"
    elif status >= 500:
        message = f"provider {provider.name} answered {status}: {message}"
    keep = {"Retry-After": headers["retry-after"]} if "retry-after" in headers else {}
    keep["x-lockgate-upstream-status"] = str(status)
    if status >= 500:
        err = UpstreamError(message, status=502, type="api_error", headers=keep)
    else:
        err = UpstreamError(message, status=status, type=type_ if isinstance(type_, str) else None, headers=keep)
        shape = _ERROR_SHAPES.get(ctx.dialect.NAME)
        if ctx.passthrough and shape is not None and is_error_body(shape, body):
            err.raw = body  # type: ignore[attr-defined]
            err.raw_dialect = ctx.dialect  # type: ignore[attr-defined]
    err.upstream_status = status
    return err


def _error_json_of(provider: Any, body: bytes) -> bool:
    """An error JSON in the provider's own format (any JSON object for formats without a shape here)."""
    shape = _ERROR_SHAPES.get(provider.dialect.NAME)
    if shape is None:
        return True
    if shape == "google" and body[:1] == b"[":  # Gemini's non-SSE stream wraps its error in an array
        body = body.strip()[1:-1]
    return is_error_body(shape, body)


def _json_object(body: bytes) -> bool:
    """A JSON object (or Gemini's array of one), as every provider's error bodies are."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) or (isinstance(data, list) and bool(data) and isinstance(data[0], dict))


def _json(body: bytes) -> Any:
    """A successful answer's JSON object (the one parse it gets); anything else is the provider's fault."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamError("the provider returned a body that is not JSON", status=502) from None
    if not isinstance(data, dict):
        raise UpstreamError("the provider returned JSON that is not an object", status=502)
    return data


def _headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    from .pipeline import common_headers

    return [*ctx.response_headers, *common_headers(ctx)]


def send_answer(send: Send, ctx: RequestContext, body: bytes) -> Awaitable[None]:
    """A non-streamed 200: spend journaled (and cost headers added) before the answer goes out; with
    shared counters, settled too (``Grant.finish`` then returns that round trip, awaited first)."""
    if ctx.gates is not None or ctx.rewrites is not None:
        return _send_checked(send, ctx, body)
    if ctx.taps is not None:
        for tap in ctx.taps:
            tap(body)
    ctx.complete = True
    pending = _before_end(ctx)
    if pending is not None:
        return _send_after(pending, send, ctx, body)
    return send_bytes(send, 200, body, _headers(ctx))


def _before_end(ctx: RequestContext) -> Awaitable[None] | None:
    """What must be done before an answer's last bytes: the spend journaled (``Grant.finish``; with shared
    counters, their settle round trip), then the stages' finishers (the cache stores the answer), so the
    client's next request already sees both."""
    pending = ctx.grant.finish(ctx) if ctx.grant is not None else None
    if ctx.finishers is None:
        return pending
    return _finish_all(ctx, pending, ctx.finishers)


async def _finish_all(ctx: RequestContext, pending: Awaitable[None] | None, finishers: list[Finisher]) -> None:
    if pending is not None:
        await pending
    for finisher in finishers:
        more = finisher(ctx)
        if more is not None:
            await more


async def _send_checked(send: Send, ctx: RequestContext, body: bytes) -> None:
    """The stages' gates awaited (during_call checks), then their rewrites (post_call checks, the cache's
    embeddings merge); a refusal there replaces the answer with its error."""
    try:
        await _pass_gates(ctx)
        for rewrite in ctx.rewrites or ():
            body = await rewrite(body)
    except LockgateError:
        ctx.status = 0  # nothing was sent: the error is the answer
        raise
    ctx.gates = ctx.rewrites = None
    await send_answer(send, ctx, body)


async def _raced(ctx: RequestContext, call: Awaitable[UpstreamReply]) -> UpstreamReply:
    """The provider call against the gates (during_call guardrails): a gate that refuses first cancels
    the call; the prompt it sent is still accounted (estimated: the provider told nothing)."""
    task = asyncio.ensure_future(call)
    gates = [asyncio.ensure_future(g) for g in ctx.gates or ()]
    ctx.gates = gates  # type: ignore[assignment]
    pending: set[asyncio.Future[Any]] = {task, *gates}
    while task in pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for gate in done - {task}:
            if gate.exception() is not None:
                task.cancel()
                assert ctx.deployment is not None
                ctx.usage = await tokens.estimate_missing_usage(ctx.body, ctx.deployment.model)
                if ctx.usage is not None:
                    ctx.usage["completion_tokens"] = 0
                    ctx.usage["total_tokens"] = ctx.usage.get("prompt_tokens") or 0
                raise gate.exception()  # type: ignore[misc]
    return task.result()


async def _pass_gates(ctx: RequestContext) -> None:
    gates, ctx.gates = ctx.gates, None
    for gate in gates or ():
        await gate


async def _send_after(pending: Awaitable[None], send: Send, ctx: RequestContext, body: bytes) -> None:
    await pending
    await send_bytes(send, 200, body, _headers(ctx))


async def send_stream(send: Send, receive: Receive, ctx: RequestContext, events: AsyncIterator[bytes]) -> None:
    """A streamed 200: the events as they come (through the stages' taps, if any); after the last event,
    before the response's end, what ``_before_end`` gives (only when the events ran to their end).
    ``ctx.complete``: it ran to its end."""
    if ctx.gates is not None:
        try:
            await _pass_gates(ctx)
        except LockgateError:
            ctx.status = 0  # nothing was sent: the error is the answer
            raise
    if ctx.taps is not None:
        events = _tapped(ctx, events, ctx.taps)
    finish = None if ctx.grant is None and ctx.finishers is None else (lambda: _before_end(ctx))
    ctx.complete = await stream_events(send, receive, 200, _headers(ctx), events, finish)


async def _tapped(ctx: RequestContext, events: AsyncIterator[bytes], taps: list[Tap]) -> AsyncIterator[bytes]:
    try:
        async for data in events:
            last = False
            for tap in taps:
                last = bool(tap(data)) or last
            if last and ctx.finishers is not None:  # the answer's last event: finish before it leaves
                finishers, ctx.finishers = ctx.finishers, None
                await _finish_all(ctx, None, finishers)
            yield data
    finally:
        await events.aclose()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- non-streamed


async def _post(gw: Gateway, ctx: RequestContext, url: str, body: dict[str, Any]) -> Any:
    payload = orjson.dumps(body)
    headers = await upstream_headers(ctx, url, payload)
    started = perf_counter()
    call = gw.upstream.post(url, headers, payload, timeout_of(gw, ctx), gw.settings.max_response_body)
    reply = await (call if ctx.gates is None else _raced(ctx, call))
    ctx.upstream_seconds += perf_counter() - started
    if reply.status >= 400:
        raise upstream_error(ctx, reply.status, reply.headers, reply.body)
    return reply.body


async def _unary(gw: Gateway, ctx: RequestContext, send: Send) -> None:
    dep, provider = ctx.deployment, ctx.provider
    assert dep is not None and provider is not None
    if provider.local:
        canonical = await provider.complete(canonical_request(ctx), dep)  # type: ignore[attr-defined]
        ctx.usage = canonical.get("usage")
        out = orjson.dumps(ctx.dialect.response_from_canonical(canonical, dep.model))
    else:
        raw = await _post(gw, ctx, request_url(ctx, False), upstream_body(ctx))
        data = _json(raw)
        if ctx.passthrough:
            ctx.usage = ctx.dialect.usage_from_body(data)
            out = raw
        else:
            canonical = provider.dialect.response_to_canonical(data)
            ctx.usage = canonical.get("usage")
            out = orjson.dumps(ctx.dialect.response_from_canonical(canonical, dep.model))
    ctx.status = 200
    await send_answer(send, ctx, out)


# ---------------------------------------------------------------- streamed


async def _stream(gw: Gateway, ctx: RequestContext, send: Send, receive: Receive) -> None:
    dep, provider = ctx.deployment, ctx.provider
    assert dep is not None and provider is not None
    if provider.local:
        chunks = provider.stream(canonical_request(ctx), dep)  # type: ignore[attr-defined]
        ctx.status = 200
        await send_stream(send, receive, ctx, _rendered(ctx, chunks))
        return
    body = upstream_body(ctx)
    strip_usage = ctx.passthrough and ctx.dialect in (openai_chat, openai_completions) and _inject_usage(body)
    idle = dep.stream_timeout or gw.settings.stream_timeout or timeout_of(gw, ctx)
    url, payload = request_url(ctx, True), orjson.dumps(body)
    headers = await upstream_headers(ctx, url, payload)
    started = perf_counter()
    async with gw.upstream.stream(url, headers, payload, idle) as up:
        ctx.upstream_seconds += perf_counter() - started
        if up.status >= 400:
            raise upstream_error(ctx, up.status, up.headers, await _read_all(ctx, up, gw.settings.max_response_body))
        if ctx.passthrough:
            events = _passthrough(ctx, up, strip_usage, await _first_chunk(ctx, up), gw.settings.max_response_body)
        else:
            decoded = _decoded(ctx, up, gw.settings.max_response_body)
            events = _rendered(ctx, _prepend(await _first_canonical(decoded), decoded))
        ctx.status = 200
        await send_stream(send, receive, ctx, events)


async def _first_chunk(ctx: RequestContext, up: UpstreamStream) -> bytes | None:
    """Read before answering, so a failure here can still go to another deployment."""
    return await _read(ctx, up)


async def _first_canonical(decoded: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return await decoded.__anext__()
    except StopAsyncIteration:
        return None


async def _prepend(first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    try:
        if first is not None:
            yield first
            async for item in rest:
                yield item
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


def _inject_usage(body: dict[str, Any]) -> bool:
    """Ask an OpenAI-dialect provider for usage; True when the client had not."""
    opts = body.get("stream_options")
    opts = opts if isinstance(opts, dict) else {}
    if opts.get("include_usage"):
        return False
    body["stream_options"] = {**opts, "include_usage": True}
    return True


async def _read(ctx: RequestContext, up: UpstreamStream) -> bytes | None:
    started = perf_counter()
    chunk = await up.read()
    ctx.upstream_seconds += perf_counter() - started
    return chunk


async def _read_all(ctx: RequestContext, up: UpstreamStream, limit: int) -> bytes:
    started = perf_counter()
    try:
        return await up.read_all(limit)
    finally:
        ctx.upstream_seconds += perf_counter() - started


async def _passthrough(
    ctx: RequestContext, up: UpstreamStream, strip_usage: bool, first: bytes | None, limit: int
) -> AsyncIterator[bytes]:
    """The provider's own bytes, chunk by chunk; usage read on the side.  One event may not grow
    past ``limit`` bytes (the bytes read since the last complete event: what the parser holds)."""
    assert ctx.provider is not None
    tap = ctx.dialect.usage_tap()
    parser = ctx.provider.stream_parser()
    reframe = strip_usage or not ctx.provider.sse_native
    chunk = first
    pending = 0
    try:
        while chunk is not None:
            events = parser.feed(chunk)
            pending = 0 if events else pending + len(chunk)
            if pending > limit:
                raise too_large(limit)
            for event, data in events:
                tap.feed(event, data)
            if reframe:
                chunk = b"".join(encode_event(d, e) for e, d in events if not (strip_usage and _usage_only(d)))
            if ctx.first_token_at is None:
                ctx.first_token_at = perf_counter()
            yield chunk
            chunk = await _read(ctx, up)
    except LockgateError as err:
        ctx.error_kind = err.kind
        yield ctx.dialect.stream_encoder(ctx.model, ctx.request_id).error(err)
    finally:
        ctx.usage = tap.usage()


_EMPTY_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')


def _usage_only(data: bytes) -> bool:
    """An OpenAI usage-only chunk (``choices: []``), which the client did not ask for."""
    return b'"usage"' in data and _EMPTY_CHOICES.search(data) is not None


async def _decoded(ctx: RequestContext, up: UpstreamStream, limit: int) -> AsyncIterator[dict[str, Any]]:
    """Canonical chunks from a provider stream of another dialect (one event at most ``limit`` bytes)."""
    assert ctx.provider is not None
    decoder = ctx.provider.dialect.stream_decoder()
    parser = ctx.provider.stream_parser()
    pending = 0
    try:
        while (chunk := await _read(ctx, up)) is not None:
            events = parser.feed(chunk)
            pending = 0 if events else pending + len(chunk)
            if pending > limit:
                raise too_large(limit)
            for event, data in events:
                for canonical in decoder.feed(event, data):
                    yield canonical
        for event, data in parser.flush():
            for canonical in decoder.feed(event, data):
                yield canonical
    finally:
        ctx.usage = decoder.usage() or ctx.usage


async def _rendered(ctx: RequestContext, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Canonical chunks rendered in the client's dialect, errors as a final event."""
    encoder = _encoder(ctx)
    filters = ctx.chunk_filters
    try:
        async for chunk in chunks if filters is None else _filtered(chunks, filters):
            if chunk.get("usage"):
                ctx.usage = chunk["usage"]
            data = encoder.encode(chunk)
            if data:
                if ctx.first_token_at is None:
                    ctx.first_token_at = perf_counter()
                yield data
        yield encoder.finish()
    except LockgateError as err:
        ctx.error_kind = err.kind
        yield encoder.error(err)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def _filtered(chunks: AsyncIterator[dict[str, Any]], filters: list[ChunkFilter]
                    ) -> AsyncIterator[dict[str, Any]]:
    """Canonical chunks through the stages' filters (guardrails on a stream), each may hold text back."""
    async for chunk in chunks:
        out = [chunk]
        for f in filters:
            out = [o for c in out for o in await f.feed(c)]
        for o in out:
            yield o
    tail: list[dict[str, Any]] = []
    for f in filters:
        tail = [o for c in tail for o in await f.feed(c)] + await f.finish()
    for o in tail:
        yield o


async def rerendered(ctx: RequestContext, stored: list[bytes]) -> AsyncIterator[bytes]:
    """A stored stream of the client's own dialect, decoded to canonical chunks and rendered again through
    the stages' filters (a cached answer under output guardrails)."""
    from .transport.sse import SSEParser

    async def canonical() -> AsyncIterator[dict[str, Any]]:
        decoder = ctx.dialect.stream_decoder()  # type: ignore[attr-defined]
        parser = SSEParser()
        for raw in stored:
            for event, data in parser.feed(raw):
                for chunk in decoder.feed(event, data):
                    yield chunk
        for event, data in parser.flush():
            for chunk in decoder.feed(event, data):
                yield chunk

    async for data in _rendered(ctx, canonical()):
        yield data


def _encoder(ctx: RequestContext) -> Any:
    if ctx.dialect is openai_chat or ctx.dialect is openai_completions:
        opts = ctx.body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        door = openai_chat if ctx.dialect is openai_chat else openai_completions
        return door.stream_encoder(ctx.model, ctx.request_id, include_usage)
    return ctx.dialect.stream_encoder(ctx.model, ctx.request_id)


# ---------------------------------------------------------------- embeddings and token counting


async def _embeddings(gw: Gateway, ctx: RequestContext, send: Send) -> None:
    dep, provider = ctx.deployment, ctx.provider
    assert dep is not None and provider is not None
    if provider.local:
        result = provider.embed(ctx.body, dep)  # type: ignore[attr-defined]
    elif not provider.supports_embeddings:
        raise BadRequest(f"provider {provider.name!r} offers no embeddings; choose an embedding model", param="model")
    elif ctx.passthrough:
        raw = await _post(gw, ctx, provider.embeddings_url(dep), {**ctx.body, "model": dep.model})
        ctx.usage = (_json(raw) or {}).get("usage")
        ctx.status = 200
        await send_answer(send, ctx, raw)
        return
    elif provider.embeddings_per_input(dep):
        result = await _embeddings_per_input(gw, ctx)
    else:
        raw = await _post(gw, ctx, provider.embeddings_url(dep), provider.embeddings_request(ctx.body, dep))
        result = provider.embeddings_response(_json(raw), dep, ctx.model)
    ctx.usage = result.get("usage")
    ctx.status = 200
    await send_answer(send, ctx, orjson.dumps(result))


async def embed_texts(gw: Gateway, ctx: RequestContext) -> dict[str, Any]:
    """The OpenAI-shaped embeddings result of ``ctx.body`` from the bound deployment, sent nowhere (the
    semantic cache's embeddings through a deployment of the config)."""
    dep, provider = ctx.deployment, ctx.provider
    assert dep is not None and provider is not None
    if provider.local:
        return provider.embed(ctx.body, dep)  # type: ignore[attr-defined]
    if ctx.passthrough:
        return _json(await _post(gw, ctx, provider.embeddings_url(dep), {**ctx.body, "model": dep.model}))
    if provider.embeddings_per_input(dep):
        return await _embeddings_per_input(gw, ctx)
    raw = await _post(gw, ctx, provider.embeddings_url(dep), provider.embeddings_request(ctx.body, dep))
    return provider.embeddings_response(_json(raw), dep, ctx.model)


async def _embeddings_per_input(gw: Gateway, ctx: RequestContext) -> dict[str, Any]:
    """One call per input (Bedrock Titan); the answers, in order, go to ``embeddings_response``."""
    dep, provider = ctx.deployment, ctx.provider
    assert dep is not None and provider is not None
    inputs = ctx.body["input"] if isinstance(ctx.body["input"], list) else [ctx.body["input"]]
    url = provider.embeddings_url(dep)
    replies = [_json(await _post(gw, ctx, url, provider.embeddings_request({**ctx.body, "input": one}, dep)))
               for one in inputs]
    return provider.embeddings_response(replies, dep, ctx.model)


async def _count_tokens(gw: Gateway, ctx: RequestContext, send: Send) -> None:
    dep, provider = ctx.deployment, ctx.provider
    assert dep is not None and provider is not None
    url = None if provider.local else provider.count_tokens_url(dep)
    if url and ctx.passthrough:
        raw = await _post(gw, ctx, url, {**ctx.body, "model": dep.model})
        ctx.response_headers.append((b"x-lockgate-token-count", b"exact"))
    elif url and provider.dialect.NAME == "gemini":  # Gemini's countTokens, on the translated request
        try:
            canonical = ctx.dialect.request_to_canonical({"max_tokens": 1, **ctx.body})
            count_body = provider.count_tokens_body(tokens.gemini_count_body(canonical, dep.model), dep)
        except MALFORMED as exc:
            raise malformed_body(exc) from None
        reply = _json(await _post(gw, ctx, url, count_body))
        raw = orjson.dumps({"input_tokens": int((reply or {}).get("totalTokens") or 0)})
        ctx.response_headers.append((b"x-lockgate-token-count", b"exact"))
    else:  # tiktoken over the bundled encodings: exact for OpenAI models, an estimate for others
        try:
            counted = await tokens.count_prompt_tokens_async(ctx.body, dep.model)
        except MALFORMED as exc:
            raise malformed_body(exc) from None
        raw = orjson.dumps({"input_tokens": counted})
        ctx.response_headers.append((b"x-lockgate-token-count", b"estimated"))
    ctx.status = 200
    await send_answer(send, ctx, raw)


def estimate_tokens(body: dict[str, Any]) -> int:
    """About four characters a token over system, messages and tools."""
    text = orjson.dumps([body.get("system"), body.get("messages"), body.get("tools")])
    return max(1, len(text) // 4)
