"""Routing and reliability against fault-injecting providers (tests/mocks/faulty_api.py)."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, MockHost, free_port, start_gateway
from tests.mocks import MOCK_API_KEY, MOCK_TEXT


@pytest.fixture(scope="module")
def faulty():
    from tests.mocks import anthropic_api, faulty_api

    host = MockHost()
    servers = {"faulty": host.start("faulty", faulty_api.create_app),
               "anthropic": host.start("anthropic", anthropic_api.create_app)}
    yield servers
    host.stop()


def dep(name: str, label: str, mode: str, faulty, **params) -> dict:
    return {"model_name": name, "litellm_params": {
        "model": "openai/gpt-4o", "api_base": f"{faulty['faulty'].url}/{label}/{mode}/v1", "api_key": MOCK_API_KEY,
        **params}}


def routing_config(faulty) -> dict:
    f = faulty
    return {
        "model_list": [
            dep("weighted", "w1", "ok", f, weight=1), dep("weighted", "w3", "ok", f, weight=3),
            dep("retry-group", "flaky", "flaky2", f),
            dep("tiered", "tier1", "500", f, order=1), dep("tiered", "tier2", "ok", f, order=2),
            dep("primary-fails", "p503", "503", f), dep("backup", "backup", "ok", f),
            dep("openai-broken", "broken", "500", f),
            {"model_name": "claude-backup", "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5", "api_base": f["anthropic"].url, "api_key": MOCK_API_KEY}},
            dep("small-ctx", "small", "context", f), dep("big-ctx", "big", "ok", f),
            {**dep("tiny-window", "tiny", "ok", f), "model_info": {"max_input_tokens": 40}},
            dep("policy-group", "policy", "policy", f),
            dep("lonely-503", "lonely", "503", f),
            dep("cool", "cool", "429", f),
            dep("fails3", "f500", "500", f, order=1), dep("fails3", "fok", "ok", f, order=2),
            dep("hang-group", "hang", "hang", f, timeout=0.5, stream_timeout=0.5),
            dep("stall-group", "stall", "stall", f, stream_timeout=0.5),
            dep("drop-group", "drop", "drop", f),
            {"model_name": "refused", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": f"http://127.0.0.1:{free_port()}/v1", "api_key": "k"}},
            {"model_name": "faulty/*", "litellm_params": {
                "model": "openai/*", "api_base": f"{f['faulty'].url}/wild/ok/v1", "api_key": MOCK_API_KEY}},
            dep("premium", "premium", "ok", f),
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "router_settings": {
            "routing_strategy": "simple-shuffle",
            "num_retries": 2,
            "retry_policy": {"RateLimitErrorRetries": 1},
            "allowed_fails": 3,
            "cooldown_time": 2,
            "model_group_alias": {"alias-name": "weighted"},
            "fallbacks": [{"primary-fails": ["backup"]}, {"openai-broken": ["claude-backup"]},
                          {"hang-group": ["backup"]}, {"refused": ["backup"]}],
            "context_window_fallbacks": [{"small-ctx": ["big-ctx"]}, {"tiny-window": ["big-ctx"]}],
            "content_policy_fallbacks": [{"policy-group": ["backup"]}],
        },
        "lockgate_settings": {"routing_rules": [
            {"when": {"header": {"x-priority": "high"}, "model": "weighted"}, "model": "premium"}]},
    }


@pytest.fixture(scope="module")
def gw(faulty, tmp_path_factory):
    running = start_gateway(routing_config(faulty), tmp_path_factory.mktemp("routing"))
    yield running
    running.process.terminate()
    running.process.wait(10)


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)


def ask(client, model, stream=False, **kw):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": kw.pop("text", "hi")}], stream=stream, **kw)


def test_weighted_shuffle_distribution(client, faulty):
    counts = faulty["faulty"].recorder.counts
    before = counts["w1"], counts["w3"]
    n = 400
    for _ in range(n):
        ask(client, "weighted")
    share = (counts["w3"] - before[1]) / n
    # expected 0.75; binomial sd = sqrt(.75*.25/400) ~ 0.022: 4 sd tolerance
    assert 0.66 < share < 0.84, share


def test_retries_recover_a_flaky_deployment(client, faulty):
    raw = ask(client, "retry-group")
    assert raw.parse().choices[0].message.content == "answer from flaky"
    assert raw.headers["x-lockgate-retries"] == "2"
    assert faulty["faulty"].recorder.counts["flaky"] == 3


def test_order_tiers_fail_over_to_the_next_tier(client, faulty):
    raw = ask(client, "tiered")
    assert raw.parse().choices[0].message.content == "answer from tier2"
    assert raw.headers["x-lockgate-deployment"]


def test_fallback_to_another_group(client):
    raw = ask(client, "primary-fails")
    assert raw.parse().choices[0].message.content == "answer from backup"
    assert raw.headers["x-lockgate-fallbacks"] == "1"
    assert raw.headers["x-lockgate-retries"] == "2"


def test_cross_dialect_fallback_keeps_the_clients_dialect(client, gw, faulty):
    resp = ask(client, "openai-broken").parse()
    assert resp.choices[0].message.content == MOCK_TEXT  # answered by the Anthropic mock, rendered as OpenAI
    assert faulty["anthropic"].recorder.last.path == "/v1/messages"
    claude = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    msg = claude.messages.create(model="openai-broken", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    assert msg.content[0].text == MOCK_TEXT
    with claude.messages.stream(model="openai-broken", max_tokens=20,
                                messages=[{"role": "user", "content": "x"}]) as stream:
        assert "".join(stream.text_stream) == MOCK_TEXT


def test_context_window_fallback_on_error_and_proactively(client, faulty):
    counts = faulty["faulty"].recorder.counts
    assert ask(client, "small-ctx").parse().choices[0].message.content == "answer from big"
    assert counts["small"] == 1  # a context error is not retried
    tiny_before = counts["tiny"]
    long_prompt = "word " * 200
    assert ask(client, "tiny-window", text=long_prompt).parse().choices[0].message.content == "answer from big"
    assert counts["tiny"] == tiny_before  # never called: the prompt could not fit
    assert ask(client, "tiny-window", text="hi").parse().choices[0].message.content == "answer from tiny"


def test_content_policy_fallback(client):
    assert ask(client, "policy-group").parse().choices[0].message.content == "answer from backup"


def test_request_fallbacks_in_the_body(client, faulty):
    resp = ask(client, "lonely-503", extra_body={"fallbacks": ["backup"]}).parse()
    assert resp.choices[0].message.content == "answer from backup"
    assert "fallbacks" not in faulty["faulty"].recorder.last.body  # never sent upstream
    with pytest.raises(openai.APIStatusError):  # without fallbacks the failure reaches the client
        ask(client, "lonely-503")


def test_cooldown_entry_and_exit(client, faulty):
    counts = faulty["faulty"].recorder.counts
    with pytest.raises(openai.RateLimitError):
        ask(client, "cool")
    assert counts["cool"] == 1  # 429 cools the deployment down at once: the retry does not hit it again
    with pytest.raises(openai.RateLimitError) as info:
        ask(client, "cool")
    assert counts["cool"] == 1
    assert "cooling down" in info.value.message
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 2
    time.sleep(2.1)
    with pytest.raises(openai.RateLimitError):
        ask(client, "cool")
    assert counts["cool"] == 2  # cooldown over: the deployment is tried again


def test_allowed_fails_then_cooldown(client, faulty):
    counts = faulty["faulty"].recorder.counts
    for _ in range(10):
        assert ask(client, "fails3").parse().choices[0].message.content == "answer from fok"
    assert counts["f500"] == 3  # after allowed_fails failures within a minute it is skipped


def test_timeout_falls_back(client):
    started = time.monotonic()
    assert ask(client, "hang-group").parse().choices[0].message.content == "answer from backup"
    assert 0.5 <= time.monotonic() - started < 10


def test_stream_fails_over_transparently_before_the_first_byte(client):
    raw = ask(client, "hang-group", stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "answer from backup"


def test_stream_idle_gap_ends_with_an_error_event(gw):
    body = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": "Bearer " + MASTER_KEY},
                      json={"model": "stall-group", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                      timeout=20).text
    assert "answer " in body and '"error"' in body
    assert "[DONE]" not in body  # never a silent, normal-looking end


def test_stream_dropped_mid_way_ends_with_an_error_event_in_each_dialect(gw):
    body = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": "Bearer " + MASTER_KEY},
                      json={"model": "drop-group", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                      timeout=20).text
    assert '"error"' in body
    body = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
                      json={"model": "drop-group", "stream": True, "max_tokens": 10,
                            "messages": [{"role": "user", "content": "x"}]}, timeout=20).text
    assert "event: error" in body


def test_refused_connection_falls_back(client):
    assert ask(client, "refused").parse().choices[0].message.content == "answer from backup"


def test_wildcard_alias_and_conditional_rules(client, faulty):
    assert ask(client, "faulty/my-model").parse().choices[0].message.content == "answer from wild"
    assert faulty["faulty"].recorder.last.body["model"] == "my-model"
    assert ask(client, "alias-name").parse().choices[0].message.content in ("answer from w1", "answer from w3")
    resp = client.chat.completions.create(model="weighted", messages=[{"role": "user", "content": "x"}],
                                          extra_headers={"x-priority": "high"})
    assert resp.choices[0].message.content == "answer from premium"


def test_health_endpoint_reports_each_deployment_without_secrets(gw):
    assert httpx.get(gw.url + "/health").status_code == 401
    report = httpx.get(gw.url + "/health", headers={"authorization": "Bearer " + MASTER_KEY}, timeout=60).json()
    healthy = {e["model"] for e in report["healthy_endpoints"]}
    unhealthy = {e["model"]: e for e in report["unhealthy_endpoints"]}
    assert {"backup", "premium", "big-ctx"} <= healthy
    assert {"primary-fails", "openai-broken", "refused", "hang-group"} <= set(unhealthy)
    assert unhealthy["primary-fails"]["error"]
    assert MOCK_API_KEY not in str(report)
    assert any(e["model"] == "faulty/*" for e in report["skipped_endpoints"])


def test_metrics_per_deployment(gw):
    text = httpx.get(gw.url + "/metrics").text
    assert 'lockgate_deployment_requests_total{' in text and 'outcome="failure"' in text
    assert "lockgate_deployment_cooldown{" in text
    assert "lockgate_deployment_latency_seconds_bucket" in text
