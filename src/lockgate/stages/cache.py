"""The response-cache stage (``litellm_settings.cache``): answers repeated requests without the provider.

``before``: the request's key (cache/keys.py: the canonical whole request, route, model group, stream
flag, tenant scope), the per-request controls, a lookup; a hit is replayed as it was first sent (the same
bytes: a stream as the same events) and the provider is not called.  On a miss a tap collects the answer
as the client gets it, and a finisher stores it before its last bytes (so the client's next request already
hits): only an answer that completed (200, ran to its end, a natural finish: stop or tool calls) is stored;
an error, a truncated, cut or aborted answer never is.  Embeddings are cached per input item; a partial hit
asks the provider only for the missing items.  With a semantic type, a miss of the exact key looks for an
equivalent earlier prompt (cache/queries.py, cache/semantic.py) before calling the provider.

A backend failure is a bypass for ``OUTAGE_BYPASS_S`` (counted, logged once by the backend), never an
error for the client.  docs/caching.md.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from time import monotonic, perf_counter, time
from typing import TYPE_CHECKING, Any

import orjson

from .. import forwarding
from ..cache.backends import CacheBackend, make_backend
from ..cache.embeddings import EmbeddingsFill, assemble, item_keys
from ..cache.fill import MAX_ENTRY_BYTES, CacheFill
from ..cache.keys import Controls, read_controls, request_key, scope_of
from ..cache.queries import semantic_query
from ..governance.cost import price_for

if TYPE_CHECKING:
    import redis.asyncio

    from ..cache.semantic import SemanticIndex, SemanticQuery
    from ..cache.settings import CacheSettings
    from ..context import RequestContext
    from ..gateway import Gateway
    from ..http import Receive, Send

log = logging.getLogger("lockgate.cache")

OUTAGE_BYPASS_S = 2.0  # after a backend error, requests skip the cache this long (no timeout per request)
NAMESPACE = "lockgate:cache:"

# route -> (pattern of its finish markers, the values that mean a natural end)
_FINISH: dict[str, tuple[re.Pattern[bytes], frozenset[bytes]]] = {
    "chat": (re.compile(rb'"finish_reason"\s*:\s*"(\w+)"'), frozenset({b"stop", b"tool_calls", b"function_call"})),
    "completions": (re.compile(rb'"finish_reason"\s*:\s*"(\w+)"'), frozenset({b"stop"})),
    "messages": (re.compile(rb'"stop_reason"\s*:\s*"(\w+)"'), frozenset({b"end_turn", b"tool_use", b"stop_sequence"})),
    "generate": (re.compile(rb'"finishReason"\s*:\s*"(\w+)"'), frozenset({b"STOP"})),
    "responses": (re.compile(rb'"status"\s*:\s*"(\w+)"'), frozenset({b"completed", b"in_progress"})),
}
# the stream's own last event, where its dialect has one
_STREAM_END: dict[str, bytes] = {"chat": b"data: [DONE]", "completions": b"data: [DONE]",
                                 "messages": b"message_stop", "responses": b"response.completed"}


@dataclass(slots=True)
class CacheHit:
    """What a hit replayed: accounting and the spend record read it."""

    key: str
    cost: float  # what the first answer cost: saved now
    tokens: int  # prompt + completion tokens of the first answer
    model: str | None
    age: float
    semantic: bool = False


@dataclass(slots=True)
class Entry:
    created: float
    stream: bool
    chunks: list[bytes]
    cost: float
    tokens: int
    model: str | None

    def encode(self) -> bytes:
        head = orjson.dumps({"t": self.created, "s": self.stream, "n": [len(c) for c in self.chunks],
                             "c": self.cost, "k": self.tokens, "m": self.model})
        return head + b"\n" + b"".join(self.chunks)

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        head, _, body = raw.partition(b"\n")
        meta = orjson.loads(head)
        chunks, at = [], 0
        for size in meta["n"]:
            chunks.append(body[at:at + size])
            at += size
        return cls(meta["t"], meta["s"], chunks, meta["c"], meta["k"], meta["m"])


class CacheStage:
    name = "cache"

    def __init__(self, gw: Gateway, settings: CacheSettings) -> None:
        self.settings = settings
        self.redis: redis.asyncio.Redis | None = None
        self.backend: CacheBackend = make_backend("local", max_bytes=settings.max_bytes)
        self.namespace = (settings.namespace + ":" if settings.namespace else "") + NAMESPACE
        self.semantic: SemanticIndex | None = None
        self._gw = gw
        self._down_until = 0.0

    async def start(self) -> None:
        s = self.settings
        if s.shared:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            assert s.redis_url is not None
            self.redis = redis.asyncio.from_url(s.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                                retry=Retry(NoBackoff(), 0), health_check_interval=30)
            self.backend = make_backend("redis", max_bytes=s.max_bytes, redis_client=self.redis,
                                        namespace=self.namespace)
        if s.semantic:
            from ..cache.embedder import DeploymentEmbedder, Embedder, LocalEmbedder
            from ..cache.semantic import SemanticIndex

            embedder: Embedder
            if s.embedding_model:
                self._gw.router.deployments(s.embedding_model)  # an unknown group fails at start
                embedder = DeploymentEmbedder(self._embed_with_deployment, name=s.embedding_model)
            else:
                local = LocalEmbedder()
                await local.warm()  # loaded now (~0.1 s), not in the first request's time
                embedder = local
            self.semantic = SemanticIndex(
                embedder, threshold=s.similarity_threshold, max_entries_per_scope=s.max_entries_per_scope,
                max_turns=s.max_turns, embed_timeout_s=s.embed_timeout_s, redis=self.redis,
                redis_prefix=self.namespace, ttl_s=s.ttl)

    async def _embed_with_deployment(self, texts: list[str]) -> list[list[float]]:
        """Embeddings from the first deployment of ``embedding_model`` (one vector space)."""
        from ..context import RequestContext
        from ..dialects import openai_chat

        gw, group = self._gw, self.settings.embedding_model
        assert group is not None
        ctx = RequestContext(request_id=gw.new_request_id(), route="embeddings", dialect=openai_chat, headers={})
        ctx.model = ctx.model_group = group
        ctx.body = {"model": group, "input": texts}
        forwarding.bind(gw, ctx, gw.router.deployments(group)[0])
        result = await forwarding.embed_texts(gw, ctx)
        return [d["embedding"] for d in sorted(result["data"], key=lambda d: d.get("index", 0))]

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    # ------------------------------------------------------------------ before the call

    async def before(self, gw: Gateway, ctx: RequestContext, send: Send, receive: Receive) -> bool:
        s = self.settings
        if ctx.route not in s.routes:
            return False
        controls = read_controls(ctx)
        if s.mode == "default_off" and not controls.use_cache:
            return False
        scope = scope_of(ctx, s.scope)
        if ctx.route == "embeddings":
            return await self._embeddings(gw, ctx, send, controls, scope)
        key = request_key(ctx, scope, controls.namespace)
        result = "bypass"
        if not controls.no_cache and monotonic() >= self._down_until:
            raw = await self._checked(self.backend.get(key))
            if raw is not None:
                entry = Entry.decode(raw)
                age = max(0.0, time() - entry.created)
                if controls.s_maxage is None or age <= controls.s_maxage:
                    await self._replay(gw, ctx, send, receive, key, entry, age)
                    return True
            result = "miss" if monotonic() >= self._down_until else "bypass"
        query = semantic_query(ctx, scope + (f"/{controls.namespace}" if controls.namespace else "")) \
            if self.semantic is not None else None
        if query is not None and result == "miss" and await self._semantic_hit(gw, ctx, send, receive, query,
                                                                               controls):
            return True
        self._verdict(gw, ctx, result)
        if not controls.no_store:
            fill = CacheFill(key, controls.ttl if controls.ttl is not None else s.ttl, query,
                             end=_STREAM_END.get(ctx.route) if ctx.stream else None)
            self._collect(gw, ctx, fill)
        return False

    def _collect(self, gw: Gateway, ctx: RequestContext, fill: CacheFill) -> None:
        """Tap the answer; store it before its last bytes, so the client's next request already hits."""
        ctx.cache_fill = fill
        ctx.taps = [*(ctx.taps or ()), fill.tap]
        ctx.finishers = [*(ctx.finishers or ()), self._store_safely]

    async def _store_safely(self, ctx: RequestContext) -> None:
        try:
            await self._store(self._gw, ctx)
        except Exception as exc:  # noqa: BLE001 - the answer goes out whatever happens to its copy
            log.warning("request %s: the answer could not be cached (%s)", ctx.request_id, type(exc).__name__)

    async def _replay(self, gw: Gateway, ctx: RequestContext, send: Send, receive: Receive, key: str,
                      entry: Entry, age: float, semantic: bool = False) -> None:
        ctx.cache_hit = CacheHit(key, entry.cost, entry.tokens, entry.model, age, semantic)
        result = "semantic-hit" if semantic else "hit"
        self._verdict(gw, ctx, result, entry.cost, entry.tokens)
        ctx.response_headers += [(b"x-litellm-cache-key", key.encode()), (b"age", b"%d" % int(age))]
        ctx.status = 200
        ctx.first_token_at = perf_counter()
        if entry.stream:
            events = _replayed(entry.chunks) if ctx.chunk_filters is None else forwarding.rerendered(ctx, entry.chunks)
            await forwarding.send_stream(send, receive, ctx, events)
        else:
            await forwarding.send_answer(send, ctx, entry.chunks[0] if entry.chunks else b"")

    async def _semantic_hit(self, gw: Gateway, ctx: RequestContext, send: Send, receive: Receive,
                            query: SemanticQuery, controls: Controls) -> bool:
        assert self.semantic is not None
        found = await self.semantic.lookup(query)
        if found is None:
            return False
        key, _score = found
        raw = await self._checked(self.backend.get(key))
        if raw is None:  # the answer expired or was deleted before its vector
            return False
        entry = Entry.decode(raw)
        age = max(0.0, time() - entry.created)
        if controls.s_maxage is not None and age > controls.s_maxage:
            return False
        await self._replay(gw, ctx, send, receive, key, entry, age, semantic=True)
        return True

    def _verdict(self, gw: Gateway, ctx: RequestContext, result: str, cost: float = 0.0, tokens: int = 0) -> None:
        ctx.cache_result = result
        ctx.response_headers.append((b"x-lockgate-cache", result.encode()))
        gw.metrics.observe_cache(result, cost, tokens)

    async def _checked(self, pending: Any) -> Any:
        """A backend call; an error it counted (it fails open) turns the cache off for a moment."""
        errors = self.backend.stats().get("errors", 0)
        value = await pending
        if self.backend.stats().get("errors", 0) != errors:
            self._down_until = monotonic() + OUTAGE_BYPASS_S
        return value

    # ------------------------------------------------------------------ once the answer is whole

    async def _store(self, gw: Gateway, ctx: RequestContext) -> None:
        """An answer that ran to its end (a finisher: called only then): stored if it finished by itself."""
        fill = ctx.cache_fill
        if fill is None or ctx.status != 200 or ctx.error_kind:
            return
        if fill.size > MAX_ENTRY_BYTES:
            gw.metrics.observe_cache_store("too_large")
            return
        if isinstance(fill, EmbeddingsFill):
            await self._store_embeddings(gw, ctx, fill)
            return
        if not finished_naturally(ctx.route, ctx.stream, fill.chunks):
            gw.metrics.observe_cache_store("incomplete")
            return
        entry = Entry(time(), ctx.stream, fill.chunks if ctx.stream else [b"".join(fill.chunks)],
                      _cost(ctx), _tokens(ctx.usage), ctx.deployment.model if ctx.deployment else None)
        await self._checked(self.backend.set(fill.key, entry.encode(), fill.ttl))
        gw.metrics.observe_cache_store("stored")
        if fill.semantic is not None and self.semantic is not None:
            await self.semantic.add(fill.semantic, fill.key)

    # ------------------------------------------------------------------ embeddings, per input item

    async def _embeddings(self, gw: Gateway, ctx: RequestContext, send: Send, controls: Controls,
                          scope: str) -> bool:
        inputs = ctx.body.get("input")
        items = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
        keys = item_keys(ctx, scope, items, controls.namespace)
        found: list[bytes | None] = [None] * len(keys)
        result = "bypass"
        if not controls.no_cache and monotonic() >= self._down_until:
            found = await self._checked(self.backend.get_many(keys))
            result = "miss" if monotonic() >= self._down_until else "bypass"
        if all(v is not None for v in found):
            body, cost, tokens = assemble(ctx, items, found)
            ctx.cache_hit = CacheHit(keys[0], cost, tokens, None, 0.0)
            self._verdict(gw, ctx, "hit", cost, tokens)
            ctx.response_headers.append((b"x-litellm-cache-key", keys[0].encode()))
            ctx.status = 200
            await forwarding.send_answer(send, ctx, body)
            return True
        hits = sum(v is not None for v in found)
        self._verdict(gw, ctx, "partial-hit" if hits else result)
        ttl = controls.ttl if controls.ttl is not None else self.settings.ttl
        fill = EmbeddingsFill(keys[0], ttl, keys=keys, found=found, items=items, store=not controls.no_store)
        if hits:
            ctx.body = {**ctx.body, "input": [item for item, v in zip(items, found, strict=True) if v is None]}
            ctx.rewrites = [*(ctx.rewrites or ()), fill.merged]  # the provider's items merged with the hits
        self._collect(gw, ctx, fill)
        return False

    async def _store_embeddings(self, gw: Gateway, ctx: RequestContext, fill: EmbeddingsFill) -> None:
        if not fill.store:
            return
        for key, value in fill.new_entries(_cost(ctx)):
            await self._checked(self.backend.set(key, value, fill.ttl))
        gw.metrics.observe_cache_store("stored")

    # ------------------------------------------------------------------ administration

    async def delete(self, keys: list[str]) -> int:
        return await self.backend.delete(keys)

    async def flush(self, scope: str | None = None) -> int:
        if self.semantic is not None:
            await self.semantic.purge(scope)
        return await self.backend.flush(scope)

    async def ping(self) -> bool:
        return await self.backend.ping()


def finished_naturally(route: str, stream: bool, chunks: list[bytes]) -> bool:
    """The answer ended by itself (stop, tool calls): never a length cut, a filter, an error, a cut stream."""
    rule = _FINISH.get(route)
    if rule is None:
        return True
    body = b"".join(chunks)
    if stream:
        end = _STREAM_END.get(route)
        if end is not None and end not in body[-4096:]:
            return False
    pattern, natural = rule
    found = pattern.findall(body)
    if route == "responses":  # items report "completed" too; the response itself must not be incomplete
        return bool(found) and all(v in natural for v in found) and b"completed" in found
    return bool(found) and all(v in natural for v in found)


async def _replayed(chunks: list[bytes]) -> Any:
    for chunk in chunks:
        yield chunk


def _cost(ctx: RequestContext) -> float:
    if ctx.grant is not None:
        return ctx.grant.cost
    return price_for(ctx.deployment).cost(ctx.usage) if ctx.deployment is not None else 0.0


def _tokens(usage: dict[str, Any] | None) -> int:
    if not usage:
        return 0
    return int((usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0))
