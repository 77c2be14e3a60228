"""One request, in order.  Read this file top to bottom to follow any request.

    authenticate   key -> principal: master key, or a virtual key (governance: cached sha256 lookup)
    parse          the front door's body: model + stream, required fields
    authorize      key ∩ user ∩ team ∩ organization: blocked, expiry, routes, models, IPs; end user
    pre_request    plugin hooks (docs/plugins.md): may rewrite the body or refuse; a new model is authorized again
    admit          rate limits, parallel slots, budgets: one counters call (one Redis round trip)
    route          model name -> model group (rules, aliases, wildcards), client fallbacks
    answer early   the stages' ``before`` (stages/: a response-cache hit answers here, without the call)
    call           attempts: pick a deployment, forward, retry / fall back, answer in the client's dialect
    after          the stages' ``after``, accounting last: usage -> metrics -> access log; spend journaled
                   (before the last bytes, see governance.Grant.finish), counters settled; post_response /
                   on_error hooks (their exceptions, and a stage's own, are logged: never the client's problem)

Each stage is a short function taking the gateway and the request context.
"""

from __future__ import annotations

import hmac
import logging

import orjson

from . import attempts
from .context import RequestContext
from .errors import AuthenticationError, BadRequest, LockgateError
from .gateway import Gateway
from .http import Receive, Send, send_bytes

log = logging.getLogger("lockgate")

# route -> required top-level fields and their JSON types (Gemini routes take the model from the URL)
REQUIRED: dict[str, tuple[tuple[str, type | tuple[type, ...], str], ...]] = {
    "chat": (("model", str, "a string"), ("messages", list, "an array")),
    "messages": (("model", str, "a string"), ("messages", list, "an array"), ("max_tokens", int, "an integer")),
    "count_tokens": (("model", str, "a string"), ("messages", list, "an array")),
    "embeddings": (("model", str, "a string"),),
    "responses": (("model", str, "a string"), ("input", (str, list), "a string or an array")),
    "completions": (("model", str, "a string"), ("prompt", (str, list), "a string or an array of strings")),
    "generate": (("contents", list, "an array"),),
    "gemini_count_tokens": (),
}


async def handle(gw: Gateway, ctx: RequestContext, raw_body: bytes, send: Send, receive: Receive) -> None:
    error: LockgateError | None = None
    if gw.tracing is not None:
        ctx.span = gw.tracing.start_request(ctx)
    try:
        await authenticate(gw, ctx)
        parse(ctx, raw_body)
        await authorize(gw, ctx)
        if gw.hooks.pre_request:
            await pre_request(gw, ctx)
        await admit(gw, ctx)
        route(gw, ctx)
        if not (gw.before_stages and await answer_early(gw, ctx, send, receive)):
            await attempts.call(gw, ctx, send, receive)
    except LockgateError as err:
        error = err
        await respond_error(gw, ctx, send, err)
    except Exception as exc:  # never a bare 500 with a traceback to the client
        log.exception("request %s failed: %s", ctx.request_id, type(exc).__name__)
        error = LockgateError(f"internal error (request {ctx.request_id})")
        await respond_error(gw, ctx, send, error)
    finally:
        for stage in gw.after_stages:
            try:
                await stage.after(gw, ctx, error)
            except Exception as exc:
                log.exception("request %s: the %s stage failed: %s", ctx.request_id, stage.name,
                              type(exc).__name__)
        if ctx.span is not None and gw.tracing is not None:
            gw.tracing.end_request(ctx, ctx.span, error)
        if ctx.guardrails is not None:  # its objects point back at the request: no cycle left for the GC
            ctx.guardrails = ctx.chunk_filters = ctx.rewrites = ctx.gates = None


def presented_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else auth.strip()
    return headers.get("x-api-key") or headers.get("api-key") or headers.get("x-goog-api-key")


async def authenticate(gw: Gateway, ctx: RequestContext) -> None:
    master = gw.settings.master_key
    if master is None:
        ctx.principal = "anonymous"
        return
    key = presented_key(ctx.headers)
    if not key:
        raise AuthenticationError("no API key: send Authorization: Bearer <key>, x-api-key, api-key or x-goog-api-key")
    if hmac.compare_digest(key.encode(), master.encode()):
        ctx.principal = "master"
    elif gw.governance is not None:
        await gw.governance.authenticate(ctx, key)  # a virtual key, else 401
    else:
        raise AuthenticationError("invalid API key")


def parse(ctx: RequestContext, raw_body: bytes) -> None:
    try:
        body = orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.args[0]}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    for name, kind, label in REQUIRED[ctx.route]:
        value = body.get(name)
        if value is None:
            raise BadRequest(f"missing required field '{name}'", param=name)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            raise BadRequest(f"field '{name}' must be {label}", param=name)
    if ctx.route == "embeddings" and body.get("input") in (None, "", []):
        raise BadRequest("missing required field 'input'", param="input")
    if ctx.route in ("chat", "messages") and not body["messages"]:
        raise BadRequest("field 'messages' must not be empty", param="messages")
    ctx.body = body
    ctx.model = ctx.model or body["model"]  # set already when the route carries it (Gemini)
    streams = ctx.route in ("chat", "messages", "responses", "completions")
    if streams and body.get("stream") is not None and not isinstance(body["stream"], bool):  # 1, "yes", ...
        raise BadRequest("field 'stream' must be a boolean", param="stream")
    ctx.stream = ctx.stream or (body.get("stream") is True and streams)


async def authorize(gw: Gateway, ctx: RequestContext) -> None:
    """Effective policy of a virtual key (403 / 401 as docs/endpoints.md says); end user blocked."""
    if gw.governance is not None:
        await gw.governance.authorize(ctx)


async def pre_request(gw: Gateway, ctx: RequestContext) -> None:
    """Plugin hooks (guardrails): they may rewrite ``ctx.body``, change the model, or raise to refuse."""
    asked = ctx.model, ctx.body.get("user")
    for hook in gw.hooks.pre_request:
        await hook(gw, ctx)
    if (ctx.model, ctx.body.get("user")) != asked:
        await authorize(gw, ctx)  # the model or end user a plugin chose is checked as the client's would be


async def admit(gw: Gateway, ctx: RequestContext) -> None:
    """Rate limits, parallel slots and budgets of every level: 429, x-ratelimit-* headers."""
    if gw.governance is not None:
        await gw.governance.admit(ctx)


def route(gw: Gateway, ctx: RequestContext) -> None:
    """Model group (conditional rules, aliases, wildcards) and the client's own fallbacks."""
    ctx.model_group = gw.router.resolve(ctx)
    gw.router.deployments(ctx.model_group)  # unknown model: 404 before any attempt
    fallbacks = ctx.body.pop("fallbacks", None)
    if fallbacks is not None:
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            raise BadRequest("field 'fallbacks' must be an array of model names", param="fallbacks")
        ctx.request_fallbacks = fallbacks


async def answer_early(gw: Gateway, ctx: RequestContext, send: Send, receive: Receive) -> bool:
    """The stages' ``before``, in order: the first that answers (a cache hit) ends the request here."""
    for stage in gw.before_stages:
        if await stage.before(gw, ctx, send, receive):
            return True
    return False


async def respond_error(gw: Gateway, ctx: RequestContext, send: Send, err: LockgateError) -> None:
    ctx.error_kind = err.kind
    if ctx.status:  # the answer had already started (a stream): nothing more to send
        return
    ctx.status = err.status
    raw = getattr(err, "raw", None)
    if raw is not None and getattr(err, "raw_dialect", None) is ctx.dialect:
        body = raw  # same dialect: the provider's own error body, as it sent it
    else:
        body = orjson.dumps(ctx.dialect.error_body(err))
    headers = list(ctx.response_headers)
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    headers += common_headers(ctx)
    await send_bytes(send, err.status, body, headers)


def common_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-request-id", ctx.request_id.encode()),
        (b"x-lockgate-overhead-ms", b"%.3f" % ctx.overhead_ms()),
    ]
    if ctx.deployment is not None:
        headers.append((b"x-lockgate-deployment", ctx.deployment.id.encode()))
    if ctx.retries or ctx.fallbacks:
        headers.append((b"x-lockgate-retries", str(ctx.retries).encode()))
        headers.append((b"x-lockgate-fallbacks", str(ctx.fallbacks).encode()))
    return headers
