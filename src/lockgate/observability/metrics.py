"""Prometheus metrics, owned by the gateway (no module-level registry).

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` is set by the CLI
and ``/metrics`` aggregates every worker's numbers.

Per request, observations only touch plain Python counters (``_Tally``: a count,
or histogram bucket counts found with ``bisect``); they are added to the
prometheus_client objects (whose every ``inc`` takes a lock, or writes a file in
multiprocess mode) in ``flush()``: at each scrape and at most once a second.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Iterable
from time import monotonic
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from lockgate.observability.litellm_metrics import DeploymentInfo, WithLiteLLMAliases, deployment_info

if TYPE_CHECKING:
    from lockgate.observability.state_metrics import StateCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OTHER = "__other__"  # the key / team label of series past ``max_series``
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


class _Tally:
    """Observations not yet added to one prometheus_client child (counter or histogram)."""

    __slots__ = ("bounds", "buckets", "child", "count", "sum")

    def __init__(self, child: Any, bounds: tuple[float, ...] | None = None) -> None:
        self.child = child
        self.bounds = bounds
        self.count = 0.0
        self.buckets = [0] * (len(bounds) + 1) if bounds is not None else None
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1  # type: ignore[index, arg-type]
        self.sum += value

    def flush(self) -> None:
        if self.buckets is None:
            if self.count:
                self.child.inc(self.count)
                self.count = 0.0
            return
        if not any(self.buckets):
            return
        # prometheus_client keeps one (non-cumulative) value per bucket plus the sum
        for i, n in enumerate(self.buckets):
            if n:
                self.child._buckets[i].inc(n)
                self.buckets[i] = 0
        self.child._sum.inc(self.sum)
        self.sum = 0.0


class Metrics:
    def __init__(self, litellm_names: bool = True, deployments: Iterable[Any] = ()) -> None:
        """``litellm_names``: also expose LiteLLM's metric names at scrape time (litellm_metrics.py);
        ``deployments`` (config ``Deployment`` objects) fill LiteLLM's per-deployment labels."""
        self.registry = CollectorRegistry()
        self.litellm_names = litellm_names
        self.deployments: DeploymentInfo = deployment_info(deployments)
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        reg = None if self._multiprocess else self.registry
        self.requests = Counter(
            "lockgate_requests", "Model requests by model group, provider and HTTP status",
            ["model", "provider", "status"], registry=reg,
        )
        self.latency = Histogram(
            "lockgate_request_duration_seconds", "Whole request latency seen by the client",
            ["model"], buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.upstream_latency = Histogram(
            "lockgate_upstream_duration_seconds", "Time spent waiting on the provider",
            ["model", "provider"], buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.overhead = Histogram(
            "lockgate_overhead_seconds", "Time the gateway itself added to a request",
            buckets=OVERHEAD_BUCKETS, registry=reg,
        )
        self.ttft = Histogram(
            "lockgate_time_to_first_token_seconds", "Time to the first streamed token",
            ["model"], buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.tokens = Counter(
            "lockgate_tokens", "Tokens by model group and direction (input/output)",
            ["model", "direction"], registry=reg,
        )
        self.errors = Counter("lockgate_errors", "Errors by kind", ["kind"], registry=reg)
        self.deployment_requests = Counter(
            "lockgate_deployment_requests", "Attempts per deployment and outcome (success/failure)",
            ["deployment", "model", "outcome"], registry=reg,
        )
        self.deployment_latency = Histogram(
            "lockgate_deployment_latency_seconds", "Latency of successful attempts per deployment",
            ["deployment"], buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.plugin_errors = Counter(
            "lockgate_plugin_errors", "Plugin hook failures by plugin, hook and error (exception/timeout/dropped)",
            ["plugin", "hook", "error"], registry=reg,
        )
        self.cache_requests = Counter(
            "lockgate_cache_requests", "Response-cache lookups by result (hit, semantic-hit, miss, bypass)",
            ["result"], registry=reg,
        )
        self.cache_saved_cost = Counter(
            "lockgate_cache_saved_cost", "Provider spend (USD) that cache hits saved", registry=reg,
        )
        self.cache_saved_tokens = Counter(
            "lockgate_cache_saved_tokens", "Provider tokens that cache hits saved", registry=reg,
        )
        self.cache_stores = Counter(
            "lockgate_cache_stores", "Answers offered to the cache by outcome (stored, incomplete, too_large)",
            ["outcome"], registry=reg,
        )
        self.spend = Counter(
            "lockgate_spend_usd", "Provider spend (USD) by model group, key (alias, else hash prefix) and team",
            ["model", "key", "team"], registry=reg,
        )
        self.retries = Counter("lockgate_retries", "Retried attempts by model group", ["model"], registry=reg)
        self.fallbacks = Counter(
            "lockgate_fallbacks", "Requests that fell back to another model group, by outcome (success/failure)",
            ["model", "fallback_model", "outcome"], registry=reg,
        )
        self.cooldowns = Counter(
            "lockgate_deployment_cooldowns", "Times a deployment was put in cooldown, by the failure's status",
            ["deployment", "status"], registry=reg,
        )
        self.guardrail_verdicts = Counter(
            "lockgate_guardrail_verdicts", "Guardrail verdicts by guardrail, phase and verdict "
            "(passed, masked, blocked, failed)", ["guardrail", "phase", "verdict"], registry=reg,
        )
        # OpenTelemetry span export (tracing.py: only with callbacks ["otel"]; counted by its exporter thread)
        self.trace_spans_exported = Counter(
            "lockgate_trace_spans_exported", "Spans the OTLP exporter delivered to the collector", registry=reg,
        )
        self.trace_spans_dropped = Counter(
            "lockgate_trace_spans_dropped", "Spans never delivered, by reason (queue_full: the batch "
            "processor's bounded queue was full; export_failed: the exporter gave up after its retries)",
            ["reason"], registry=reg,
        )
        self.state: StateCollector | None = None  # scrape-time gauges (state_metrics.scrape registers it)
        self._collectors: list[object] = []
        self._tallies: list[_Tally] = []
        self._children: dict[tuple[str, str, int], tuple[_Tally, ...]] = {}
        self._token_children: dict[str, tuple[_Tally, _Tally]] = {}
        self._attempt_children: dict[tuple[str, str, bool], tuple[_Tally, _Tally]] = {}
        self._overhead = self._tally(self.overhead, OVERHEAD_BUCKETS)
        self._cache_children: dict[str, _Tally] = {}
        self._spend_children: dict[tuple[str, str, str], _Tally] = {}
        self._verdict_children: dict[tuple[str, str, str], _Tally] = {}
        self._saved_cost = self._tally(self.cache_saved_cost)
        self._saved_tokens = self._tally(self.cache_saved_tokens)
        self._next_flush = monotonic() + 1.0
        self._flush_scheduled = False

    def _tally(self, child: Any, bounds: tuple[float, ...] | None = None) -> _Tally:
        tally = _Tally(child, bounds)
        self._tallies.append(tally)
        return tally

    def flush(self) -> None:
        """Add what was observed since the last flush to the prometheus_client objects."""
        self._next_flush = monotonic() + 1.0
        for tally in self._tallies:
            tally.flush()

    def _maybe_flush(self) -> None:
        if monotonic() >= self._next_flush:
            self.flush()
        elif self._multiprocess and not self._flush_scheduled:
            # other workers answer scrapes from the shared files: written within a second, even if idle
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(1.0, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def observe_request(self, model: str, provider: str, status: int, total: float, upstream: float,
                        ttft: float | None) -> None:
        """One finished request; labelled children are cached (``labels()`` is the slow part)."""
        key = (model, provider, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._tally(self.requests.labels(model, provider, str(status))),
                self._tally(self.latency.labels(model), LATENCY_BUCKETS),
                self._tally(self.upstream_latency.labels(model, provider), LATENCY_BUCKETS),
                self._tally(self.ttft.labels(model), LATENCY_BUCKETS),
            )
        children[0].count += 1
        children[1].observe(total)
        self._overhead.observe(total - upstream if total > upstream else 0.0)
        if upstream:
            children[2].observe(upstream)
        if ttft is not None:
            children[3].observe(ttft)
        self._maybe_flush()

    def observe_attempt(self, deployment: str, model: str, ok: bool, seconds: float | None = None) -> None:
        """One attempt against a deployment (children cached, as above)."""
        key = (deployment, model, ok)
        children = self._attempt_children.get(key)
        if children is None:
            children = self._attempt_children[key] = (
                self._tally(self.deployment_requests.labels(deployment, model, "success" if ok else "failure")),
                self._tally(self.deployment_latency.labels(deployment), LATENCY_BUCKETS))
        children[0].count += 1
        if seconds is not None:
            children[1].observe(seconds)

    def observe_tokens(self, model: str, prompt: int, completion: int, error_kind: str | None) -> None:
        if prompt or completion:
            children = self._token_children.get(model)
            if children is None:
                children = self._token_children[model] = (
                    self._tally(self.tokens.labels(model, "input")), self._tally(self.tokens.labels(model, "output")))
            children[0].count += prompt
            children[1].count += completion
        if error_kind:
            self.errors.labels(error_kind).inc()

    def observe_cache(self, result: str, saved_cost: float = 0.0, saved_tokens: int = 0) -> None:
        """One cache verdict (only with the cache configured), tallied like the request metrics."""
        tally = self._cache_children.get(result)
        if tally is None:
            tally = self._cache_children[result] = self._tally(self.cache_requests.labels(result))
        tally.count += 1
        if saved_cost:
            self._saved_cost.count += saved_cost
        if saved_tokens:
            self._saved_tokens.count += saved_tokens

    def observe_cache_store(self, outcome: str) -> None:
        tally = self._cache_children.get("store:" + outcome)
        if tally is None:
            tally = self._cache_children["store:" + outcome] = self._tally(self.cache_stores.labels(outcome))
        tally.count += 1

    def observe_spend(self, model: str, key: str, team: str, cost: float, max_series: int) -> None:
        """One request's provider spend (only when it cost something); at most ``max_series`` series, the
        rest summed under ``__other__``."""
        label = (model, key, team)
        tally = self._spend_children.get(label)
        if tally is None:
            if len(self._spend_children) >= max_series:
                label = (model, OTHER, OTHER)
                tally = self._spend_children.get(label)
            if tally is None:
                tally = self._spend_children[label] = self._tally(self.spend.labels(*label))
        tally.count += cost

    def observe_guardrails(self, results: Iterable[Any]) -> None:
        """A guarded request's verdicts (``guardrails.run.Result``: name, phase, verdict)."""
        for result in results:
            label = (result.name, result.phase, result.verdict)
            tally = self._verdict_children.get(label)
            if tally is None:
                tally = self._verdict_children[label] = self._tally(self.guardrail_verdicts.labels(*label))
            tally.count += 1

    def retried(self, model: str) -> None:
        """An attempt failed and is retried (rare: counted directly)."""
        self.retries.labels(model).inc()

    def fell_back(self, model: str, fallback_model: str, ok: bool) -> None:
        """A request that left its model group: answered by ``fallback_model`` (ok) or failed there."""
        self.fallbacks.labels(model, fallback_model, "success" if ok else "failure").inc()

    def cooled_down(self, deployment: str, status: int) -> None:
        """A deployment was put in cooldown by a failure of this HTTP status (0: no answer)."""
        self.cooldowns.labels(deployment, str(status)).inc()

    def plugin_error(self, plugin: str, hook: str, error: str) -> None:
        """A plugin hook raised, timed out or an event was dropped (rare: counted directly)."""
        self.plugin_errors.labels(plugin, hook, error).inc()

    def watch(self, collector: object) -> None:
        """Add a collector read at scrape time (state gauges that cost nothing per request)."""
        self._collectors.append(collector)
        if not self._multiprocess:
            self.registry.register(collector)  # type: ignore[arg-type]

    def render(self) -> bytes:
        self.flush()
        registry = self.registry
        if self._multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            for collector in self._collectors:
                registry.register(collector)  # type: ignore[arg-type]
        if self.litellm_names:
            return generate_latest(WithLiteLLMAliases(registry, self.deployments))
        return generate_latest(registry)
