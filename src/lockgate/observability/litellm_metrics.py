"""LiteLLM's Prometheus metric names, derived at scrape time from Lockgate's own families.

Nothing here runs per request: ``with_litellm_aliases`` wraps the registry that ``/metrics``
renders; when scraped it collects Lockgate's families once, yields them, then yields the
LiteLLM-named copies built from those same samples (so existing LiteLLM Grafana dashboards
work). Labels Lockgate does not track (key, team, user, ...) are exported as empty strings,
which PromQL treats like absent labels. The mapping is documented in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

# LiteLLM label sets (litellm/types/integrations/prometheus.py, the long-standing core of each set)
REQUESTS = ("end_user", "hashed_api_key", "api_key_alias", "model", "team", "team_alias", "user")
PROXY_TOTAL = ("end_user", "hashed_api_key", "api_key_alias", "requested_model", "team", "team_alias", "user",
               "status_code")
PROXY_FAILED = ("end_user", "hashed_api_key", "api_key_alias", "requested_model", "team", "team_alias", "user",
                "exception_status", "exception_class")
TOKENS = ("end_user", "hashed_api_key", "api_key_alias", "model", "team", "team_alias", "user", "requested_model")
TOTAL_LATENCY = ("end_user", "hashed_api_key", "api_key_alias", "requested_model", "team", "team_alias", "user",
                 "model")
API_LATENCY = ("model", "hashed_api_key", "api_key_alias", "team", "team_alias", "requested_model", "end_user", "user")
OVERHEAD = ("model_group", "api_provider", "api_base", "litellm_model_name", "hashed_api_key", "api_key_alias",
            "model_id")
DEPLOYMENT_STATE = ("litellm_model_name", "model_id", "api_base", "api_provider")
DEPLOYMENT = ("requested_model", "litellm_model_name", "model_id", "api_base", "api_provider", "hashed_api_key",
              "api_key_alias", "team", "team_alias")
DEPLOYMENT_FAILED = (*DEPLOYMENT, "exception_status", "exception_class")
CACHE = ("model", "hashed_api_key", "api_key_alias", "team", "team_alias", "end_user", "user")
SPEND = ("end_user", "hashed_api_key", "api_key_alias", "model", "team", "team_alias", "user")
FALLBACK = ("requested_model", "fallback_model", "hashed_api_key", "api_key_alias", "team", "team_alias",
            "exception_status", "exception_class")
COOLED_DOWN = ("litellm_model_name", "model_id", "api_base", "api_provider", "exception_status")

CACHE_HITS = frozenset({"hit", "semantic-hit", "partial-hit"})

# deployment id -> (litellm_model_name, api_base, api_provider)
DeploymentInfo = dict[str, tuple[str, str, str]]


def deployment_info(deployments: Iterable[Any]) -> DeploymentInfo:
    """LiteLLM's deployment labels from Lockgate ``Deployment`` objects (api_base without credentials)."""
    info: DeploymentInfo = {}
    for dep in deployments:
        base = dep.api_base or ""
        if base:
            parts = urlsplit(base)
            host = parts.hostname or ""
            if parts.port:
                host += f":{parts.port}"
            base = urlunsplit((parts.scheme, host, parts.path, "", ""))
        info[dep.id] = (f"{dep.provider}/{dep.model}", base, dep.provider)
    return info


def _labels(names: tuple[str, ...], **values: str) -> dict[str, str]:
    return {name: values.get(name, "") for name in names}


def _samples(family: Metric | None, suffix: str) -> Iterator[tuple[dict[str, str], float]]:
    if family is None:
        return
    name = family.name + suffix
    for sample in family.samples:
        if sample.name == name:
            yield sample.labels, sample.value


def _counter(name: str, doc: str, totals: dict[tuple[tuple[str, str], ...], float]) -> Metric:
    metric = Metric(name, doc, "counter")
    for key, value in totals.items():
        metric.samples.append(Sample(name + "_total", dict(key), value, None, None))
    return metric


def _sum_counter(family: Metric | None, labels: Callable[[dict[str, str]], dict[str, str] | None]
                 ) -> dict[tuple[tuple[str, str], ...], float]:
    totals: dict[tuple[tuple[str, str], ...], float] = {}
    for src, value in _samples(family, "_total"):
        dst = labels(src)
        if dst is not None:
            key = tuple(dst.items())
            totals[key] = totals.get(key, 0.0) + value
    return totals


def _le(bound: str) -> float:
    return float("inf") if bound == "+Inf" else float(bound)


def _histogram(name: str, doc: str, family: Metric | None,
               labels: Callable[[dict[str, str]], dict[str, str]]) -> Metric:
    """A renamed copy of a histogram family, series with the same target labels summed."""
    buckets: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    sums: dict[tuple[tuple[str, str], ...], float] = {}
    if family is not None:
        for sample in family.samples:
            src = dict(sample.labels)
            if sample.name.endswith("_bucket"):
                le = src.pop("le")
                key = tuple(labels(src).items())
                per_key = buckets.setdefault(key, {})
                per_key[le] = per_key.get(le, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                key = tuple(labels(src).items())
                counts[key] = counts.get(key, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                key = tuple(labels(src).items())
                sums[key] = sums.get(key, 0.0) + sample.value
    metric = Metric(name, doc, "histogram")
    for key, per_key in buckets.items():
        base = dict(key)
        for le in sorted(per_key, key=_le):
            metric.samples.append(Sample(name + "_bucket", {**base, "le": le}, per_key[le], None, None))
        metric.samples.append(Sample(name + "_count", base, counts.get(key, 0.0), None, None))
        metric.samples.append(Sample(name + "_sum", base, sums.get(key, 0.0), None, None))
    return metric


def litellm_families(families: Iterable[Metric], deployments: DeploymentInfo) -> Iterator[Metric]:
    """LiteLLM-named families computed from Lockgate's collected families."""
    by_name = {family.name: family for family in families}
    requests = by_name.get("lockgate_requests")
    tokens = by_name.get("lockgate_tokens")

    yield _counter("litellm_requests_metric", "Requests per model (Lockgate: lockgate_requests_total, any status)",
                   _sum_counter(requests, lambda s: _labels(REQUESTS, model=s["model"])))
    yield _counter("litellm_proxy_total_requests_metric",
                   "Requests per model group and status code (Lockgate: lockgate_requests_total)",
                   _sum_counter(requests, lambda s: _labels(PROXY_TOTAL, requested_model=s["model"],
                                                            status_code=s["status"])))
    yield _counter("litellm_proxy_failed_requests_metric",
                   "Requests answered with an error status (Lockgate: lockgate_requests_total, status >= 400)",
                   _sum_counter(requests, lambda s: _labels(PROXY_FAILED, requested_model=s["model"],
                                                            exception_status=s["status"])
                                if s["status"].isdigit() and int(s["status"]) >= 400 else None))
    for name, direction, doc in (
        ("litellm_input_tokens_metric", "input", "Input tokens per model (Lockgate: lockgate_tokens_total)"),
        ("litellm_output_tokens_metric", "output", "Output tokens per model (Lockgate: lockgate_tokens_total)"),
        ("litellm_total_tokens_metric", None, "Input + output tokens per model (Lockgate: lockgate_tokens_total)"),
    ):
        def token_labels(s: dict[str, str], d: str | None = direction) -> dict[str, str] | None:
            return _labels(TOKENS, model=s["model"], requested_model=s["model"]) if d in (None, s["direction"]) else None

        yield _counter(name, doc, _sum_counter(tokens, token_labels))

    yield _histogram("litellm_request_total_latency_metric",
                     "Whole request latency (Lockgate: lockgate_request_duration_seconds)",
                     by_name.get("lockgate_request_duration_seconds"),
                     lambda s: _labels(TOTAL_LATENCY, model=s["model"], requested_model=s["model"]))
    yield _histogram("litellm_llm_api_latency_metric",
                     "Time waiting on the provider (Lockgate: lockgate_upstream_duration_seconds)",
                     by_name.get("lockgate_upstream_duration_seconds"),
                     lambda s: _labels(API_LATENCY, model=s["model"], requested_model=s["model"]))
    yield _histogram("litellm_llm_api_time_to_first_token_metric",
                     "Time to the first streamed token (Lockgate: lockgate_time_to_first_token_seconds)",
                     by_name.get("lockgate_time_to_first_token_seconds"),
                     lambda s: _labels(API_LATENCY, model=s["model"], requested_model=s["model"]))
    yield _histogram("litellm_overhead_latency_metric", "Time the gateway added (Lockgate: lockgate_overhead_seconds)",
                     by_name.get("lockgate_overhead_seconds"), lambda s: _labels(OVERHEAD))

    def dep_labels(names: tuple[str, ...], dep_id: str, **extra: str) -> dict[str, str]:
        model_name, api_base, provider = deployments.get(dep_id, ("", "", ""))
        return _labels(names, litellm_model_name=model_name, model_id=dep_id, api_base=api_base,
                       api_provider=provider, **extra)

    state: dict[str, float] = {}
    for src, value in _samples(by_name.get("lockgate_deployment_cooldown"), ""):
        if value:
            state[src["deployment"]] = max(state.get(src["deployment"], 0.0), 1.0)
        else:
            state.setdefault(src["deployment"], 0.0)
    for src, value in _samples(by_name.get("lockgate_deployment_unhealthy"), ""):
        if value:
            state[src["deployment"]] = 2.0
        else:
            state.setdefault(src["deployment"], 0.0)
    gauge = Metric("litellm_deployment_state",
                   "0 healthy, 1 partial outage (cooling down), 2 complete outage (health checks fail)", "gauge")
    for dep_id, value in state.items():
        gauge.samples.append(Sample("litellm_deployment_state", dep_labels(DEPLOYMENT_STATE, dep_id), value,
                                    None, None))
    yield gauge

    attempts = by_name.get("lockgate_deployment_requests")
    yield _counter("litellm_deployment_success_responses",
                   "Successful attempts per deployment (Lockgate: lockgate_deployment_requests_total)",
                   _sum_counter(attempts, lambda s: dep_labels(DEPLOYMENT, s["deployment"], requested_model=s["model"])
                                if s["outcome"] == "success" else None))
    yield _counter("litellm_deployment_failure_responses",
                   "Failed attempts per deployment (Lockgate: lockgate_deployment_requests_total)",
                   _sum_counter(attempts, lambda s: dep_labels(DEPLOYMENT_FAILED, s["deployment"],
                                                               requested_model=s["model"])
                                if s["outcome"] == "failure" else None))
    yield _counter("litellm_deployment_total_requests",
                   "Attempts per deployment (Lockgate: lockgate_deployment_requests_total)",
                   _sum_counter(attempts, lambda s: dep_labels(DEPLOYMENT, s["deployment"], requested_model=s["model"])))

    yield _counter("litellm_deployment_cooled_down",
                   "Times a deployment was put in cooldown (Lockgate: lockgate_deployment_cooldowns_total)",
                   _sum_counter(by_name.get("lockgate_deployment_cooldowns"),
                                lambda s: dep_labels(COOLED_DOWN, s["deployment"], exception_status=s["status"])))
    fallbacks = by_name.get("lockgate_fallbacks")
    for name, outcome in (("litellm_deployment_successful_fallbacks", "success"),
                          ("litellm_deployment_failed_fallbacks", "failure")):
        def fallback_labels(s: dict[str, str], o: str = outcome) -> dict[str, str] | None:
            return _labels(FALLBACK, requested_model=s["model"], fallback_model=s["fallback_model"]) \
                if s["outcome"] == o else None

        yield _counter(name, f"Requests that fell back, {outcome} (Lockgate: lockgate_fallbacks_total)",
                       _sum_counter(fallbacks, fallback_labels))
    yield _counter("litellm_spend_metric", "Provider spend in USD (Lockgate: lockgate_spend_usd_total)",
                   _sum_counter(by_name.get("lockgate_spend_usd"),
                                lambda s: _labels(SPEND, model=s["model"], api_key_alias=s["key"], team=s["team"])))

    cache = by_name.get("lockgate_cache_requests")
    yield _counter("litellm_cache_hits_metric", "Response-cache hits (Lockgate: lockgate_cache_requests_total)",
                   _sum_counter(cache, lambda s: _labels(CACHE) if s["result"] in CACHE_HITS else None))
    yield _counter("litellm_cache_misses_metric", "Response-cache misses (Lockgate: lockgate_cache_requests_total)",
                   _sum_counter(cache, lambda s: _labels(CACHE) if s["result"] == "miss" else None))


class WithLiteLLMAliases:
    """A registry-like object for ``generate_latest``: the source's families, then their LiteLLM copies."""

    def __init__(self, source: Any, deployments: DeploymentInfo) -> None:
        self.source = source
        self.deployments = deployments

    def collect(self) -> Iterator[Metric]:
        families = list(self.source.collect())
        yield from families
        yield from litellm_families(families, self.deployments)
