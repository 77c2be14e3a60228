"""Prometheus metrics, owned by the gateway (no module-level registry).

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` is set by the CLI
and ``/metrics`` aggregates every worker's numbers.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self._collectors: list[object] = []
        self._children: dict[tuple[str, str, int], tuple] = {}
        self._token_children: dict[str, tuple] = {}
        self._attempt_children: dict[tuple[str, str, bool], tuple] = {}

    def observe_request(self, model: str, provider: str, status: int, total: float, upstream: float,
                        ttft: float | None) -> None:
        """One finished request; labelled children are cached (``labels()`` is the slow part)."""
        key = (model, provider, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(model, provider, str(status)), self.latency.labels(model),
                self.upstream_latency.labels(model, provider), self.ttft.labels(model),
            )
        children[0].inc()
        children[1].observe(total)
        self.overhead.observe(total - upstream if total > upstream else 0.0)
        if upstream:
            children[2].observe(upstream)
        if ttft is not None:
            children[3].observe(ttft)

    def observe_attempt(self, deployment: str, model: str, ok: bool, seconds: float | None = None) -> None:
        """One attempt against a deployment (children cached, as above)."""
        key = (deployment, model, ok)
        children = self._attempt_children.get(key)
        if children is None:
            children = self._attempt_children[key] = (
                self.deployment_requests.labels(deployment, model, "success" if ok else "failure"),
                self.deployment_latency.labels(deployment))
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def observe_tokens(self, model: str, prompt: int, completion: int, error_kind: str | None) -> None:
        if prompt or completion:
            children = self._token_children.get(model)
            if children is None:
                children = self._token_children[model] = (
                    self.tokens.labels(model, "input"), self.tokens.labels(model, "output"))
            if prompt:
                children[0].inc(prompt)
            if completion:
                children[1].inc(completion)
        if error_kind:
            self.errors.labels(error_kind).inc()

    def watch(self, collector: object) -> None:
        """Add a collector read at scrape time (state gauges that cost nothing per request)."""
        self._collectors.append(collector)
        if not self._multiprocess:
            self.registry.register(collector)  # type: ignore[arg-type]

    def render(self) -> bytes:
        if self._multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            for collector in self._collectors:
                registry.register(collector)  # type: ignore[arg-type]
            return generate_latest(registry)
        return generate_latest(self.registry)
