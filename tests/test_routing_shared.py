"""Routing state across instances (Redis) and background health checks."""

from __future__ import annotations

import time
import uuid

import openai
import pytest
import redis

from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import MOCK_API_KEY

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def faulty():
    from tests.mocks import faulty_api

    host = MockHost()
    server = host.start("faulty", faulty_api.create_app)
    yield server
    host.stop()


def _dep(name: str, label: str, mode: str, server) -> dict:
    return {"model_name": name, "litellm_params": {
        "model": "openai/gpt-4o", "api_base": f"{server.url}/{label}/{mode}/v1", "api_key": MOCK_API_KEY}}


def _client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)


def test_redis_is_reachable():
    assert redis.Redis.from_url(REDIS_URL).ping()  # CI must fail, not skip, without Redis


def test_two_instances_share_cooldowns_through_redis(faulty, tmp_path):
    label = "shared-" + uuid.uuid4().hex[:8]  # a new deployment id each run
    config = {"model_list": [_dep("cool", label, "429", faulty)],
              "general_settings": {"master_key": MASTER_KEY},
              "router_settings": {"cooldown_time": 30, "redis_url": REDIS_URL}}
    first = start_gateway(config, tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path)
    second = start_gateway(config, tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path)
    try:
        with pytest.raises(openai.RateLimitError):
            _client(first).chat.completions.create(model="cool", messages=[{"role": "user", "content": "x"}])
        assert faulty.recorder.counts[label] == 1
        deadline = time.monotonic() + 1.0
        while True:  # the cooldown reaches the other instance within a second
            with pytest.raises(openai.RateLimitError) as info:
                _client(second).chat.completions.create(model="cool", messages=[{"role": "user", "content": "x"}])
            if "cooling down" in info.value.message or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert "cooling down" in info.value.message
        assert faulty.recorder.counts[label] <= 2
    finally:
        for gw in (first, second):
            gw.process.terminate()
            gw.process.wait(10)


def test_background_health_checks_take_a_failing_deployment_out(faulty, tmp_path):
    config = {"model_list": [_dep("pair", "bh-bad", "500", faulty), _dep("pair", "bh-good", "ok", faulty)],
              "general_settings": {"master_key": MASTER_KEY, "background_health_checks": True,
                                   "health_check_interval": 0.3},
              "router_settings": {"disable_cooldowns": True}}
    gw = start_gateway(config, tmp_path)
    try:
        time.sleep(1.0)  # a few health-check rounds
        before = faulty.recorder.counts["bh-bad"]
        client = _client(gw)
        for _ in range(20):
            resp = client.chat.completions.create(model="pair", messages=[{"role": "user", "content": "x"}])
            assert resp.choices[0].message.content == "answer from bh-good"
        # only health checks reach the bad deployment, never a client request
        probes = faulty.recorder.counts["bh-bad"] - before
        assert probes <= 3
    finally:
        gw.process.terminate()
        gw.process.wait(10)


def test_latency_based_routing_prefers_the_faster_deployment(faulty, tmp_path):
    config = {"model_list": [_dep("lat", "lat-slow", "slow", faulty), _dep("lat", "lat-fast", "ok", faulty)],
              "general_settings": {"master_key": MASTER_KEY},
              "router_settings": {"routing_strategy": "latency-based-routing"}}
    gw = start_gateway(config, tmp_path)
    try:
        client = _client(gw)
        for _ in range(30):
            client.chat.completions.create(model="lat", messages=[{"role": "user", "content": "x"}])
        counts = faulty.recorder.counts
        assert counts["lat-fast"] >= 25 and counts["lat-slow"] <= 5
    finally:
        gw.process.terminate()
        gw.process.wait(10)


def test_default_fallbacks_apply_to_groups_without_their_own(faulty, tmp_path):
    config = {"model_list": [_dep("broken-a", "dfa", "500", faulty), _dep("broken-b", "dfb", "503", faulty),
                             _dep("safety-net", "net", "ok", faulty), _dep("own-backup", "own", "ok", faulty)],
              "general_settings": {"master_key": MASTER_KEY},
              "router_settings": {"disable_cooldowns": True, "default_fallbacks": ["safety-net"],
                                  "fallbacks": [{"broken-b": ["own-backup"]}]}}
    gw = start_gateway(config, tmp_path)
    try:
        client = _client(gw)
        ask = lambda m: client.chat.completions.create(model=m, messages=[{"role": "user", "content": "x"}])  # noqa: E731
        assert ask("broken-a").choices[0].message.content == "answer from net"
        assert ask("broken-b").choices[0].message.content == "answer from own"  # its own fallbacks win
    finally:
        gw.process.terminate()
        gw.process.wait(10)
