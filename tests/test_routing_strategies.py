"""Each routing strategy's choice, on deployments and statistics built in the test."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lockgate.config import ConfigError, Deployment, from_dict
from lockgate.routing.retry import RetryPolicy, failure_kind
from lockgate.routing.router import Router
from lockgate.routing.stats import StatsTable
from lockgate.routing.strategies import STRATEGIES
from lockgate.errors import RateLimited, UpstreamError


def deps(*specs: dict) -> list[Deployment]:
    return [Deployment(model_name="g", provider="openai", model="m", id=f"d{i}", **spec) for i, spec in enumerate(specs)]


def test_simple_shuffle_uses_weight_then_rpm():
    rng = random.Random(7)
    table = StatsTable()
    weighted = deps({"weight": 1}, {"weight": 9})
    counts = Counter(STRATEGIES["simple-shuffle"](weighted, table, rng).id for _ in range(5000))
    assert 0.87 < counts["d1"] / 5000 < 0.93
    by_rpm = deps({"rpm": 100}, {"rpm": 300})
    counts = Counter(STRATEGIES["simple-shuffle"](by_rpm, table, rng).id for _ in range(5000))
    assert 0.72 < counts["d1"] / 5000 < 0.78


def test_least_busy_picks_fewest_in_flight():
    table = StatsTable()
    candidates = deps({}, {}, {})
    table["d0"].in_flight, table["d1"].in_flight, table["d2"].in_flight = 5, 1, 3
    assert STRATEGIES["least-busy"](candidates, table, random.Random()).id == "d1"


def test_latency_based_prefers_faster_and_spreads_among_near_equal():
    table = StatsTable()
    candidates = deps({}, {}, {})
    assert STRATEGIES["latency-based-routing"](candidates, table, random.Random()).id in {"d0", "d1", "d2"}
    table["d0"].observe_latency(0.500, None)
    table["d1"].observe_latency(0.100, None)
    table["d2"].observe_latency(0.105, None)
    rng = random.Random(1)
    picks = Counter(STRATEGIES["latency-based-routing"](candidates, table, rng).id for _ in range(400))
    assert picks["d0"] == 0 and picks["d1"] > 100 and picks["d2"] > 100
    table["d2"].observe_latency(0.101, 0.020)  # time to first token counts when known
    assert table["d2"].ttft == 0.020


def test_usage_based_picks_most_headroom():
    table = StatsTable()
    candidates = deps({"rpm": 10}, {"rpm": 10})
    for _ in range(8):
        table["d0"].count_usage(10)
    table["d1"].count_usage(10)
    assert STRATEGIES["usage-based-routing"](candidates, table, random.Random()).id == "d1"


def test_cost_based_picks_cheapest_from_model_info():
    table = StatsTable()
    candidates = deps({"model_info": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5}},
                      {"model_info": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}})
    assert STRATEGIES["cost-based-routing"](candidates, table, random.Random()).id == "d1"


def test_order_tiers_and_cooldown_in_pick():
    settings = from_dict({"model_list": [
        {"model_name": "g", "litellm_params": {"model": "openai/a", "order": 1}, "model_info": {"id": "first"}},
        {"model_name": "g", "litellm_params": {"model": "openai/b", "order": 2}, "model_info": {"id": "second"}},
    ], "router_settings": {"cooldown_time": 30}})
    router = Router(settings)
    assert {router.pick("g", set()).id for _ in range(20)} == {"first"}
    router.cool_down("first", 1e12)
    assert router.pick("g", set()).id == "second"
    with pytest.raises(RateLimited) as info:  # the rest is cooling down: 429 with the time to recovery
        router.pick("g", {"second"})
    assert int(info.value.headers["Retry-After"]) > 0


def test_retry_policy_and_failure_kinds():
    policy = RetryPolicy.from_settings({"num_retries": 3, "retry_policy": {"RateLimitErrorRetries": 1,
                                                                          "BadRequestErrorRetries": 0}})
    assert policy.retries_for("rate_limit") == 1 and policy.retries_for("server") == 3
    assert policy.retries_for("bad_request") == 0 and policy.retries_for("auth") == 0
    assert failure_kind(UpstreamError("maximum context length is 8k", status=400)) == "context_window"
    assert failure_kind(UpstreamError("x", status=400, code="content_policy_violation")) == "content_policy"
    assert failure_kind(UpstreamError("x", status=503)) == "server"
    assert failure_kind(UpstreamError("x", status=429)) == "rate_limit"
    err = UpstreamError("slow down", status=429, headers={"Retry-After": "3"})
    delays = [policy.delay(i, err, random.Random(i)) for i in range(4)]
    assert all(d >= 3 for d in delays)  # Retry-After is honoured
    plain = UpstreamError("x", status=500)
    steps = [policy.delay(i, plain, random.Random(0)) for i in range(5)]
    assert steps[4] > steps[0]  # exponential back-off


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError):
        from_dict({"model_list": [], "router_settings": {"routing_strategy": "fastest-please"}})
