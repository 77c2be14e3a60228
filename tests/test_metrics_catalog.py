"""The metrics catalog: Lockgate's names, the LiteLLM aliases built from them at scrape time,
and the shipped Grafana dashboard and Prometheus alert rules (docs/metrics.md).

The dashboard and the alert rules are checked against a real scrape: every metric name their
PromQL uses must be one the gateway exposes.  ``promtool`` (Debian package ``prometheus``) is
required: the test fails, not skips, without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lockgate.config import Deployment
from lockgate.observability import litellm_metrics
from lockgate.observability.metrics import Metrics
from tests.conftest import MASTER_KEY, gateway_config, start_gateway

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "lockgate-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
HEADERS = {"Authorization": f"Bearer {MASTER_KEY}"}

LITELLM_NAMES = {
    "litellm_requests_metric_total": litellm_metrics.REQUESTS,
    "litellm_proxy_total_requests_metric_total": litellm_metrics.PROXY_TOTAL,
    "litellm_proxy_failed_requests_metric_total": litellm_metrics.PROXY_FAILED,
    "litellm_total_tokens_metric_total": litellm_metrics.TOKENS,
    "litellm_input_tokens_metric_total": litellm_metrics.TOKENS,
    "litellm_output_tokens_metric_total": litellm_metrics.TOKENS,
    "litellm_request_total_latency_metric_bucket": (*litellm_metrics.TOTAL_LATENCY, "le"),
    "litellm_llm_api_latency_metric_bucket": (*litellm_metrics.API_LATENCY, "le"),
    "litellm_llm_api_time_to_first_token_metric_bucket": (*litellm_metrics.API_LATENCY, "le"),
    "litellm_overhead_latency_metric_bucket": (*litellm_metrics.OVERHEAD, "le"),
    "litellm_deployment_state": litellm_metrics.DEPLOYMENT_STATE,
    "litellm_deployment_success_responses_total": litellm_metrics.DEPLOYMENT,
    "litellm_deployment_failure_responses_total": litellm_metrics.DEPLOYMENT_FAILED,
    "litellm_deployment_total_requests_total": litellm_metrics.DEPLOYMENT,
    "litellm_cache_hits_metric_total": litellm_metrics.CACHE,
    "litellm_cache_misses_metric_total": litellm_metrics.CACHE,
}


class Scrape:
    """A parsed /metrics answer: samples by name, and every name the exposition declares."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.names: set[str] = set()
        for family in text_string_to_metric_families(text):
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                        "gauge": ("",)}.get(family.type, ("",))
            self.names.update(family.name + s for s in suffixes)
            for sample in family.samples:
                self.names.add(sample.name)
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def total(self, name: str, **labels: str) -> float:
        return sum(v for lab, v in self.samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def _metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (Lockgate's and LiteLLM's prefixes, and ``up``)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    names = set(re.findall(r"\b(?:lockgate|litellm)_[a-zA-Z0-9_:]*", expr))
    if re.search(r"\bup\b", expr):
        names.add("up")
    return names


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    exprs: list[tuple[str, str]] = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            exprs.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            exprs.append(("$" + var["name"], query))
    return exprs


@pytest.fixture(scope="module")
def scrape(mocks, tmp_path_factory) -> Scrape:
    config = gateway_config(mocks)
    config["litellm_settings"] = {"drop_params": True, "cache": True, "cache_params": {"type": "local"}}
    gw = start_gateway(config, tmp_path_factory.mktemp("metrics-catalog"))
    try:
        with httpx.Client(base_url=gw.url, headers=HEADERS, timeout=20) as client:
            body = {"model": "openai-model", "messages": [{"role": "user", "content": "metrics catalog cached"}]}
            first = client.post("/v1/chat/completions", json=body)
            second = client.post("/v1/chat/completions", json=body)
            assert first.status_code == second.status_code == 200
            assert (first.headers["x-lockgate-cache"], second.headers["x-lockgate-cache"]) == ("miss", "hit")
            with client.stream("POST", "/v1/chat/completions", json={
                    "model": "openai-model", "stream": True,
                    "messages": [{"role": "user", "content": "metrics catalog streamed"}]}) as resp:
                assert resp.status_code == 200
                resp.read()
            assert client.post("/v1/chat/completions", json={
                "model": "claude-model", "messages": [{"role": "user", "content": "metrics catalog claude"}]},
            ).status_code == 200
            failed = client.post("/v1/chat/completions", json={
                "model": "unreachable-model", "messages": [{"role": "user", "content": "metrics catalog down"}]})
            assert failed.status_code >= 500
            text = client.get("/metrics").text
    finally:
        gw.process.terminate()
        gw.process.wait(10)
    return Scrape(text)


def test_lockgate_names_are_exposed(scrape):
    for name in ("lockgate_requests_total", "lockgate_request_duration_seconds_bucket",
                 "lockgate_upstream_duration_seconds_bucket", "lockgate_overhead_seconds_bucket",
                 "lockgate_time_to_first_token_seconds_bucket", "lockgate_tokens_total",
                 "lockgate_deployment_requests_total", "lockgate_deployment_cooldown",
                 "lockgate_deployment_unhealthy", "lockgate_cache_requests_total", "lockgate_errors_total"):
        assert scrape.samples.get(name), name
    assert scrape.total("lockgate_requests_total", model="openai-model", status="200") == 3
    assert scrape.total("lockgate_cache_requests_total", result="hit") == 1
    assert scrape.total("lockgate_time_to_first_token_seconds_count", model="openai-model") >= 1
    assert scrape.total("lockgate_errors_total") >= 1


def test_litellm_aliases_carry_litellm_label_sets(scrape):
    for name, labels in LITELLM_NAMES.items():
        series = scrape.samples.get(name)
        assert series, f"{name} missing"
        for lab, _ in series:
            assert set(lab) == set(labels), (name, lab)
            # what Lockgate does not track (keys, teams, users) is left empty
            assert all(lab[k] == "" for k in ("hashed_api_key", "api_key_alias", "team", "team_alias", "user",
                                              "end_user") if k in lab), (name, lab)


def test_litellm_aliases_match_lockgate_values(scrape):
    for model in ("openai-model", "claude-model", "unreachable-model"):
        assert scrape.total("litellm_requests_metric_total", model=model) == \
            scrape.total("lockgate_requests_total", model=model) > 0
        assert scrape.total("litellm_request_total_latency_metric_count", model=model) == \
            scrape.total("lockgate_request_duration_seconds_count", model=model)
        assert scrape.total("litellm_request_total_latency_metric_bucket", model=model, le="+Inf") == \
            scrape.total("lockgate_request_duration_seconds_count", model=model)
        assert scrape.total("litellm_llm_api_latency_metric_count", model=model) == \
            scrape.total("lockgate_upstream_duration_seconds_count", model=model)
    for model in ("openai-model", "claude-model"):
        tokens_in = scrape.total("lockgate_tokens_total", model=model, direction="input")
        tokens_out = scrape.total("lockgate_tokens_total", model=model, direction="output")
        assert tokens_in > 0 and tokens_out > 0
        assert scrape.total("litellm_input_tokens_metric_total", model=model) == tokens_in
        assert scrape.total("litellm_output_tokens_metric_total", model=model) == tokens_out
        assert scrape.total("litellm_total_tokens_metric_total", model=model) == tokens_in + tokens_out
    assert scrape.total("litellm_llm_api_time_to_first_token_metric_count", model="openai-model") == \
        scrape.total("lockgate_time_to_first_token_seconds_count", model="openai-model") >= 1
    assert scrape.total("litellm_overhead_latency_metric_count") == scrape.total("lockgate_overhead_seconds_count")

    assert scrape.total("litellm_proxy_total_requests_metric_total", requested_model="openai-model",
                        status_code="200") == 3
    failed = [(lab, v) for lab, v in scrape.samples["litellm_proxy_failed_requests_metric_total"]]
    assert failed and all(lab["requested_model"] == "unreachable-model" for lab, _ in failed)
    assert all(int(lab["exception_status"]) >= 500 for lab, _ in failed)

    # per deployment: the router's ids; the gateway does not pass its deployments, so ids only
    for outcome, alias in (("success", "litellm_deployment_success_responses_total"),
                           ("failure", "litellm_deployment_failure_responses_total")):
        for lab, value in scrape.samples["lockgate_deployment_requests_total"]:
            if lab["outcome"] == outcome:
                assert scrape.total(alias, model_id=lab["deployment"], requested_model=lab["model"]) == value
    assert scrape.total("litellm_deployment_failure_responses_total", requested_model="unreachable-model") >= 1
    assert scrape.total("litellm_deployment_total_requests_total") == scrape.total("lockgate_deployment_requests_total")
    cooldown = {lab["deployment"] for lab, _ in scrape.samples["lockgate_deployment_cooldown"]}
    state = {lab["model_id"]: v for lab, v in scrape.samples["litellm_deployment_state"]}
    assert set(state) == cooldown and set(state.values()) == {0.0}  # cooldowns are disabled in this config

    hits = scrape.total("lockgate_cache_requests_total", result="hit") + \
        scrape.total("lockgate_cache_requests_total", result="semantic-hit")
    assert scrape.total("litellm_cache_hits_metric_total") == hits == 1
    assert scrape.total("litellm_cache_misses_metric_total") == \
        scrape.total("lockgate_cache_requests_total", result="miss") >= 1


def test_deployment_state_and_labels():
    """0 healthy, 1 cooling down (partial outage), 2 health checks failing (complete outage)."""
    from prometheus_client.core import GaugeMetricFamily

    class States:
        def collect(self):
            cooldown = GaugeMetricFamily("lockgate_deployment_cooldown", "", labels=["deployment"])
            unhealthy = GaugeMetricFamily("lockgate_deployment_unhealthy", "", labels=["deployment"])
            for dep, (c, u) in {"a": (0, 0), "b": (1, 0), "c": (0, 1), "d": (1, 1)}.items():
                cooldown.add_metric([dep], c)
                unhealthy.add_metric([dep], u)
            yield cooldown
            yield unhealthy

    deployments = [Deployment("g", "openai", "gpt-4o", dep, api_base="https://user:secret@example.com:8443/v1?key=x")
                   for dep in "abcd"]
    metrics = Metrics(deployments=deployments)
    metrics.watch(States())
    metrics.observe_attempt("b", "g", False)
    scrape = Scrape(metrics.render().decode())
    states = {lab["model_id"]: v for lab, v in scrape.samples["litellm_deployment_state"]}
    assert states == {"a": 0.0, "b": 1.0, "c": 2.0, "d": 2.0}
    (lab, value), = scrape.samples["litellm_deployment_failure_responses_total"]
    assert value == 1
    assert lab["litellm_model_name"] == "openai/gpt-4o" and lab["api_provider"] == "openai"
    assert lab["api_base"] == "https://example.com:8443/v1"  # no credentials, no query

    plain = Metrics(litellm_names=False)
    plain.watch(States())
    assert b"litellm_" not in plain.render()


def test_dashboard_uses_only_exposed_metrics(scrape):
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and dash["panels"]
    exprs = _dashboard_exprs()
    assert len(exprs) >= 15
    used: set[str] = set()
    for title, expr in exprs:
        names = _metric_names(expr)
        assert names, f"panel {title!r}: no metric in {expr!r}"
        unknown = names - scrape.names
        assert not unknown, f"panel {title!r} uses metrics the gateway does not expose: {sorted(unknown)}"
        used |= names
    for needed in ("lockgate_requests_total", "lockgate_request_duration_seconds_bucket",
                   "lockgate_overhead_seconds_bucket", "lockgate_time_to_first_token_seconds_bucket",
                   "lockgate_tokens_total", "lockgate_errors_total", "lockgate_cache_requests_total",
                   "lockgate_deployment_cooldown", "lockgate_plugin_errors_total"):
        assert needed in used, needed


def test_alert_rules_are_valid_and_use_exposed_metrics(scrape):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian/Ubuntu: apt-get install prometheus)"
    result = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    alerts = {rule["alert"]: rule for rule in rules}
    assert {"LockgateDown", "LockgateHigh5xxRatio", "LockgateHighP99Latency", "LockgateDeploymentCoolingDown",
            "LockgateDeploymentUnhealthy"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule.get("for") and rule.get("labels", {}).get("severity"), name
        assert rule.get("annotations", {}).get("summary") and rule["annotations"].get("description"), name
        unknown = _metric_names(rule["expr"]) - scrape.names - {"up"}
        assert not unknown, f"alert {name} uses metrics the gateway does not expose: {sorted(unknown)}"
