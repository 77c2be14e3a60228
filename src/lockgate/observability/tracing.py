"""OpenTelemetry traces (``litellm_settings.callbacks: ["otel"]``), with the GenAI semantic conventions.

Configured by the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``),
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default, ``http/json`` (otlp_json.py) or ``grpc``),
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``, and the batch processor's ``OTEL_BSP_*``.

Per request: a SERVER span (continuing the caller's W3C ``traceparent`` / ``tracestate``), and a CLIENT
span per provider attempt, both named ``{gen_ai.operation.name} {gen_ai.request.model}``; retries and
fallbacks are separate attempt spans.  Attributes: ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
``gen_ai.response.finish_reasons``, ``error.type``, and the gateway's own ``lockgate.*`` (deployment id,
attempt, retries, fallbacks, cache result, guardrail verdicts, cost, key alias, team): never a key.  Prompt
and answer text only with ``content`` on (``lockgate_settings.otel_export_content``, and not
``litellm_settings.turn_off_message_logging``): ``gen_ai.input.messages`` (the prompt as the guardrails
left it: masked) and ``gen_ai.output.messages`` (span_content.py).

Spans are handed to the SDK's BatchSpanProcessor: exported in batches by its own thread, off the request
path, from a bounded queue (``OTEL_BSP_MAX_QUEUE_SIZE``, default 2048): a collector that is down or slow
never slows a request; spans that do not fit are dropped by the SDK (it logs them).  The ``otel`` exporter's
spans are counted (``lockgate_trace_spans_exported_total``, ``lockgate_trace_spans_dropped_total{reason}``)
without reading the SDK's internals: ``_CountingExporter`` wraps the exporter (each batch's
``SpanExportResult``) and ``_CountingProcessor`` the processor's ``on_end`` (spans handed to it, minus spans
the exporter was handed, minus drops: the queue's length, compared to its ``max_queue_size``).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from .span_content import AnswerTap, input_messages, output_messages

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Span

    from ..config import Deployment
    from ..context import RequestContext
    from .metrics import Metrics

log = logging.getLogger("lockgate.tracing")

OPERATIONS = {"chat": "chat", "messages": "chat", "generate": "chat", "responses": "chat",
              "completions": "text_completion", "embeddings": "embeddings", "count_tokens": "count_tokens",
              "gemini_count_tokens": "count_tokens"}


class Tracing:
    def __init__(self, forward_context: bool = False, otlp: bool = True, langfuse: bool = False,
                 metrics: Metrics | None = None) -> None:
        from opentelemetry.propagators.textmap import TextMapPropagator
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "lockgate"})
        self.provider = TracerProvider(resource=resource)  # the gateway's own: no global provider is set
        if otlp:
            self.provider.add_span_processor(_counting_processor(_exporter(), metrics) if metrics is not None
                                             else BatchSpanProcessor(_exporter()))
        if langfuse:
            self.provider.add_span_processor(BatchSpanProcessor(_langfuse_exporter()))
        self.langfuse = langfuse
        self.tracer = self.provider.get_tracer("lockgate")
        self.propagator: TextMapPropagator = TraceContextTextMapPropagator()
        self.forward_context = forward_context  # the attempt's context sent to the provider (traceparent)
        self.content = False  # prompt / answer on the server span (set from the settings at start-up)

    def close(self) -> None:
        self.provider.shutdown()  # what is queued is exported first

    async def close_within(self, seconds: float) -> None:
        """``close`` in a daemon thread, waited for ``seconds`` at most: an exporter still retrying a dead
        collector then never holds the process's exit (a pool thread would be joined at exit)."""
        import asyncio
        import threading

        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def run() -> None:
            try:
                self.close()
            finally:
                try:
                    loop.call_soon_threadsafe(finished)
                except RuntimeError:  # the loop closed meanwhile (the wait timed out): nobody is waiting
                    pass

        threading.Thread(target=run, name="lockgate-otel-close", daemon=True).start()
        try:
            await asyncio.wait_for(done, seconds)
        except TimeoutError:
            log.warning("traces: the exporter did not finish within %.0f s; the rest is dropped", seconds)

    # ------------------------------------------------------------------ spans

    def start_request(self, ctx: RequestContext) -> Span:
        from opentelemetry.trace import SpanKind

        parent = self.propagator.extract(ctx.headers)  # the caller's traceparent / tracestate, if any
        ctx.taps = [*(ctx.taps or ()), AnswerTap(self.content)]  # finish reasons (and the answer, opted in)
        return self.tracer.start_span(f"{OPERATIONS.get(ctx.route, ctx.route)}", context=parent,
                                      kind=SpanKind.SERVER,
                                      attributes={"gen_ai.operation.name": OPERATIONS.get(ctx.route, ctx.route),
                                                  "http.request.method": "POST", "lockgate.route": ctx.route})

    def end_request(self, ctx: RequestContext, span: Span, error: Exception | None) -> None:
        op = OPERATIONS.get(ctx.route, ctx.route)
        if ctx.model:
            span.update_name(f"{op} {ctx.model}")
        attrs: dict[str, Any] = {"http.response.status_code": ctx.status or 500, "lockgate.request_id": ctx.request_id,
                                 "lockgate.retries": ctx.retries, "lockgate.fallbacks": ctx.fallbacks}
        if ctx.model:
            attrs["gen_ai.request.model"] = ctx.model
        if ctx.deployment is not None:
            attrs["gen_ai.response.model"] = ctx.deployment.model
            attrs["lockgate.deployment.id"] = ctx.deployment.id
        if ctx.provider is not None:
            attrs["gen_ai.provider.name"] = ctx.provider.name
        _usage(attrs, ctx.usage)
        if ctx.cache_result is not None:
            attrs["lockgate.cache"] = ctx.cache_result
        if ctx.grant is not None:
            attrs["lockgate.cost"] = ctx.grant.cost
        if ctx.guardrails is not None:
            attrs["lockgate.guardrails"] = [f"{r.name}:{r.phase}:{r.verdict}" for r in ctx.guardrails.results]
        from ..governance.types import Principal

        principal = ctx.principal
        if isinstance(principal, Principal):
            if principal.key.key_alias:
                attrs["lockgate.key_alias"] = principal.key.key_alias
            if principal.key.team_id:
                attrs["lockgate.team_id"] = principal.key.team_id
        if ctx.error_kind:
            attrs["error.type"] = ctx.error_kind
        tap = _answer_tap(ctx)
        if tap is not None and tap.reasons:
            attrs["gen_ai.response.finish_reasons"] = tap.reasons
        if self.content:
            _content(attrs, ctx, tap)
        if self.langfuse:
            attrs.update(_langfuse_trace(ctx))
        span.set_attributes(attrs)
        if ctx.error_kind or (ctx.status or 500) >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, ctx.error_kind or "error"))
        span.end()

    def start_attempt(self, ctx: RequestContext, dep: Deployment, parent: Span) -> Span:
        from opentelemetry.trace import SpanKind, set_span_in_context

        op = OPERATIONS.get(ctx.route, ctx.route)
        span = self.tracer.start_span(f"{op} {ctx.model}", context=set_span_in_context(parent),
                                      kind=SpanKind.CLIENT, attributes={
                                          "gen_ai.operation.name": op, "gen_ai.request.model": ctx.model,
                                          "gen_ai.provider.name": ctx.provider.name if ctx.provider else dep.provider,
                                          "gen_ai.response.model": dep.model, "lockgate.deployment.id": dep.id,
                                          "lockgate.model_group": ctx.model_group, "lockgate.attempt": ctx.retries,
                                          "lockgate.fallback": ctx.fallbacks})
        if self.langfuse:
            span.set_attribute("langfuse.observation.type", "generation")
        if self.forward_context:
            carrier: dict[str, str] = {}
            self.propagator.inject(carrier, context=set_span_in_context(span))
            ctx.trace_headers = carrier
        return span

    def end_attempt(self, ctx: RequestContext, span: Span, error: Exception | None) -> None:
        attrs: dict[str, Any] = {}
        _usage(attrs, ctx.usage)
        if error is None:
            tap = _answer_tap(ctx)
            if tap is not None and tap.reasons:
                attrs["gen_ai.response.finish_reasons"] = tap.reasons
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            kind = getattr(error, "kind", None) or type(error).__name__
            attrs["error.type"] = kind
            status = getattr(error, "upstream_status", None) or getattr(error, "status", None)
            if status:
                attrs["http.response.status_code"] = status
            span.set_status(Status(StatusCode.ERROR, kind))
        span.set_attributes(attrs)
        span.end()


def _answer_tap(ctx: RequestContext) -> AnswerTap | None:
    for tap in ctx.taps or ():
        if isinstance(tap, AnswerTap):
            return tap
    return None


def _content(attrs: dict[str, Any], ctx: RequestContext, tap: AnswerTap | None) -> None:
    """The prompt as the guardrails left it (masked), and the answer unless a guardrail restored masked
    values into it (``output_parse_pii``: the client's answer then holds the originals).  Nothing of a
    request a guardrail blocked: what it found is still in the prompt."""
    run = ctx.guardrails
    if run is not None and any(r.verdict == "blocked" for r in run.results):
        attrs["lockgate.content_withheld"] = "guardrail_blocked"
        return
    prompt = input_messages(ctx.body)
    if prompt is not None:
        attrs["gen_ai.input.messages"] = prompt
    restored = run is not None and run.restore
    if tap is not None and ctx.status == 200 and not restored:
        answer = output_messages(tap, ctx.stream)
        if answer is not None:
            attrs["gen_ai.output.messages"] = answer


def _usage(attrs: dict[str, Any], usage: dict[str, Any] | None) -> None:
    if usage:
        attrs["gen_ai.usage.input_tokens"] = int(usage.get("prompt_tokens") or 0)
        attrs["gen_ai.usage.output_tokens"] = int(usage.get("completion_tokens") or 0)


def _langfuse_trace(ctx: RequestContext) -> dict[str, Any]:
    """Langfuse's trace attributes: the end user, the session and tags the request names."""
    from ..governance.types import Principal

    body = ctx.body
    given = body.get("metadata")
    meta: dict[str, Any] = given if isinstance(given, dict) else {}
    out: dict[str, Any] = {}
    user = body.get("user") or meta.get("trace_user_id")
    if not user and isinstance(ctx.principal, Principal):
        user = ctx.principal.key.user_id
    if isinstance(user, str) and user:
        out["user.id"] = user
    session = meta.get("session_id") or meta.get("trace_session_id")
    if isinstance(session, str) and session:
        out["session.id"] = session
    tags = body.get("tags") or meta.get("tags")
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags) and tags:
        out["langfuse.trace.tags"] = tags
    return out


def _langfuse_exporter() -> Any:
    """LiteLLM's ``langfuse_otel``: Langfuse's OTLP endpoint with Basic auth from its keys."""
    import base64

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    host = (os.environ.get("LANGFUSE_OTEL_HOST") or os.environ.get("LANGFUSE_HOST")
            or "https://us.cloud.langfuse.com").rstrip("/")
    public, secret = os.environ.get("LANGFUSE_PUBLIC_KEY", ""), os.environ.get("LANGFUSE_SECRET_KEY", "")
    if not public or not secret:
        log.warning("langfuse_otel: LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY are not set: Langfuse will refuse")
    auth = base64.b64encode(f"{public}:{secret}".encode()).decode()
    return OTLPSpanExporter(endpoint=host + "/api/public/otel/v1/traces", headers={"Authorization": "Basic " + auth})


def _exporter() -> Any:
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol == "http/json":
        from .otlp_json import OTLPJsonSpanExporter

        try:
            return OTLPJsonSpanExporter()
        except RuntimeError as exc:  # an SDK without the HTTP client it reuses
            log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=http/json: %s: exporting with http/protobuf", exc)
    if protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not one of http/protobuf, http/json, grpc: "
                    "exporting with http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT / HEADERS itself


# ---------------------------------------------------------------------- export counts


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value > 0 else default


def _counting_processor(exporter: SpanExporter, metrics: Metrics) -> BatchSpanProcessor:
    """The SDK's BatchSpanProcessor around a counting exporter, with the queue size read as the SDK reads it
    (``OTEL_BSP_MAX_QUEUE_SIZE``, default 2048) and given to it explicitly, so both agree; the batch size
    (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, default 512) is capped at the queue size (the SDK refuses more)."""
    queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
    batch = min(_env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), queue)
    return _CountingProcessor(exporter, metrics, queue, batch)


class _Counts:
    """Spans handed to the processor (written by the request thread), dropped there (same thread), and
    handed to the exporter (written by the processor's export thread): each written by one thread only."""

    __slots__ = ("dropped", "exporting", "handed")

    def __init__(self) -> None:
        self.handed = 0
        self.dropped = 0
        self.exporting = 0


class _CountingExporter(SpanExporter):
    """Counts each batch by the exporter's verdict (after its own retries)."""

    def __init__(self, exporter: SpanExporter, counts: _Counts, metrics: Metrics) -> None:
        self.exporter = exporter
        self.counts = counts
        self.exported = metrics.trace_spans_exported
        self.failed = metrics.trace_spans_dropped.labels("export_failed")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        n = len(spans)
        self.counts.exporting += n  # out of the queue
        try:
            result = self.exporter.export(spans)
        except Exception:
            self.failed.inc(n)
            raise
        if result == SpanExportResult.SUCCESS:
            self.exported.inc(n)
        else:
            self.failed.inc(n)
        return result

    def shutdown(self, timeout_millis: float = 30000) -> None:
        """The processor's remaining time, passed on when the exporter takes it (gRPC), as the SDK does."""
        import inspect

        if "timeout_millis" in inspect.signature(self.exporter.shutdown).parameters:
            self.exporter.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
        else:
            self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class _CountingProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting what its bounded queue drops: a span that finds the queue full
    pushes the oldest queued one out (the SDK's deque), one ``queue_full`` drop."""

    def __init__(self, exporter: SpanExporter, metrics: Metrics, queue: int, batch: int) -> None:
        self.counts = _Counts()
        self.max_queue_size = queue
        self.queue_full = metrics.trace_spans_dropped.labels("queue_full")
        super().__init__(_CountingExporter(exporter, self.counts, metrics), max_queue_size=queue,
                         max_export_batch_size=batch)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:  # what the SDK queues
            counts = self.counts
            if counts.handed - counts.dropped - counts.exporting >= self.max_queue_size:
                counts.dropped += 1
                self.queue_full.inc()
            counts.handed += 1
        super().on_end(span)
