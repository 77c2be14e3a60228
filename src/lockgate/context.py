"""The object one request carries through the pipeline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .cache.fill import CacheFill
    from .config import Deployment
    from .dialects import FrontDoor
    from .governance.enforcement import Grant
    from .governance.types import Principal
    from .guardrails.run import GuardRun
    from .providers import Provider
    from .stages import ChunkFilter, Finisher, Tap
    from .stages.cache import CacheHit


@dataclass(slots=True)
class RequestContext:
    request_id: str
    route: str  # "chat", "messages", "embeddings", "count_tokens"
    dialect: FrontDoor  # the client's dialect (front door)
    headers: dict[str, str]  # client request headers, lower-cased names
    client_ip: str | None = None
    body: dict[str, Any] = field(default_factory=dict)
    model: str = ""  # the model name the client asked for
    model_group: str = ""  # the group it resolved to (rules, aliases)
    request_fallbacks: list[str] | None = None  # the body's own "fallbacks"
    retries: int = 0
    drop_params: bool = False  # litellm_settings.drop_params (a deployment's own setting wins)
    fallbacks: int = 0
    stream: bool = False
    principal: Principal | str | None = None  # "master", "anonymous" or a governance.types.Principal (virtual key)
    deployment: Deployment | None = None
    provider: Provider | None = None
    passthrough: bool = False
    started: float = field(default_factory=perf_counter)
    upstream_seconds: float = 0.0  # time spent awaiting the provider
    first_token_at: float | None = None
    status: int = 0
    usage: dict[str, Any] | None = None
    error_kind: str | None = None
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    taps: list[Tap] | None = None  # stages reading the answer's bytes (stages/__init__.py); None: no tap
    finishers: list[Finisher] | None = None  # stages' work before the answer's last bytes (stages/__init__.py)
    complete: bool = False  # the answer ran to its end (a stream: last event sent, client still there)
    cache_result: str | None = None  # the cache stage's verdict: hit, miss, bypass, semantic-hit
    cache_hit: CacheHit | None = None  # what a cache hit replayed (accounting, the spend record)
    cache_fill: CacheFill | None = None  # a miss the cache stage collects
    rewrites: list[Callable[[bytes], Awaitable[bytes]]] | None = None  # stages' rewrites of a non-streamed answer (before taps)
    gates: list[Awaitable[Any]] | None = None  # checks the answer waits for before its first byte (during_call)
    chunk_filters: list[ChunkFilter] | None = None  # stages' filters over a translated stream's canonical chunks
    force_translate: bool = False  # a stage needs canonical chunks: no passthrough for this request
    guardrails: GuardRun | None = None  # this request's guardrails (results go to the spend log)
    span: Span | None = None  # the request's server span (OpenTelemetry), when tracing is on
    trace_headers: dict[str, str] | None = None  # the attempt's traceparent for the provider (otel_forward_traceparent)
    unmasked_body: dict[str, Any] | None = None  # the body as the client sent it, when a guardrail masked it
    grant: Grant | None = None  # governance.Grant: admitted counters, cost, journal state (None without governance)

    def overhead_ms(self) -> float:
        return max(0.0, (perf_counter() - self.started - self.upstream_seconds) * 1000)
