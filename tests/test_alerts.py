"""Alerts end to end (docs/alerts.md): a real gateway (embedded SQLite) driven with the openai SDK, its
Slack and webhook posts captured by a local HTTP server and its mail by a local SMTP server (aiosmtpd).

Small thresholds through ``alerting_args`` keep each test short.
"""

from __future__ import annotations

import hashlib
import threading
import time

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, MockHost, free_port, gateway_config, start_gateway
from tests.test_alerts_receivers import MailCatcher, Receiver, wait_for

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICE = 1e-3  # USD per token of the priced mock deployments
PROMPT_MARK = "PROMPT-TEXT-7f3a"  # must never reach an alert
BUDGET_FIELDS = {"spend", "max_budget", "soft_budget", "token", "customer_id", "user_id", "team_id", "team_alias",
                 "organization_id", "user_email", "key_alias", "projected_exceeded_date", "projected_spend", "event",
                 "event_group", "event_message"}


def alert_config(mocks, receiver_url: str, **args) -> dict:
    cfg = gateway_config(mocks)
    priced = {"input_cost_per_token": PRICE, "output_cost_per_token": PRICE}
    openai_base = mocks["openai"].url + "/v1"
    cfg["model_list"] += [
        {"model_name": "priced-mock", "litellm_params": {"model": "mock/priced", "mock_response": "ok then"},
         "model_info": priced},
        {"model_name": "slow-mock", "litellm_params": {"model": "mock/slow", "mock_response": "slow answer",
                                                       "mock_latency_ms": 1300}, "model_info": priced},
        {"model_name": "hang-mock", "litellm_params": {"model": "mock/hang", "mock_response": "late answer",
                                                       "mock_latency_ms": 2500}, "model_info": priced},
        {"model_name": "err-model", "litellm_params": {"model": "openai/gpt-4o", "api_base": openai_base,
                                                       "api_key": "os.environ/TEST_PROVIDER_KEY"},
         "model_info": {"id": "err-deployment"}},
    ]
    cfg["general_settings"].update({
        "alerting": ["slack", "webhook", "email"],
        "alerting_threshold": 1,
        "alert_to_webhook_url": {"llm_exceptions": [receiver_url + "/slack-exceptions"]},
        "alerting_args": {
            "request_alert_ttl": 60, "hanging_check_interval": 0.2, "projection_min_elapsed": 0.5,
            "retry_backoff": 0.1, "max_attempts": 3, "minor_outage_alert_threshold": 2,
            "major_outage_alert_threshold": 3, "outage_alert_ttl": 30, "anomaly_window": 1, "anomaly_horizon": 4,
            "anomaly_factor": 3, "anomaly_min_spend": 0.05, "anomaly_min_windows": 2,
            "daily_report_frequency": 2, "report_check_interval": 0.5, "email_to": ["ops@example.com"], **args,
        },
    })
    return cfg


class Env:
    def __init__(self, mocks, tmp) -> None:
        self.receiver = Receiver()
        self.host = MockHost()
        self.url = self.host.start("receiver", self.receiver.create_app).url
        self.mail = MailCatcher(free_port())
        self.gw = start_gateway(alert_config(mocks, self.url), tmp, {
            "SLACK_WEBHOOK_URL": self.url + "/slack", "WEBHOOK_URL": self.url + "/webhook",
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.mail.port), "SMTP_TLS": "False",
            "SMTP_SENDER_EMAIL": "lockgate@example.com",
        })
        self.client = openai.OpenAI(base_url=self.gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        self.raw_keys: list[str] = []

    def key(self, **fields) -> str:
        r = httpx.post(self.gw.url + "/key/generate", headers=ADMIN, json=fields, timeout=10)
        assert r.status_code == 200, r.text
        raw = r.json()["key"]
        self.raw_keys.append(raw)
        return raw

    def chat(self, key: str, model: str = "priced-mock", text: str = "hi") -> None:
        client = openai.OpenAI(base_url=self.gw.url + "/v1", api_key=key, max_retries=0, timeout=20)
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"{PROMPT_MARK} {text}"}])

    def webhooks(self, event: str | None = None, alert_type: str | None = None) -> list[dict]:
        out = self.receiver.bodies("/webhook")
        if event is not None:
            out = [b for b in out if b.get("event") == event]
        if alert_type is not None:
            out = [b for b in out if b.get("alert_type") == alert_type]
        return out

    def slack(self, alert_type: str, path: str = "/slack") -> list[str]:
        return [b["text"] for b in self.receiver.bodies(path) if f"\nType: {alert_type}\n" in b["text"] + "\n"]

    def close(self) -> None:
        self.gw.process.terminate()
        self.gw.process.wait(10)
        self.mail.stop()
        self.host.stop()


@pytest.fixture(scope="module")
def env(mocks, tmp_path_factory):
    e = Env(mocks, tmp_path_factory.mktemp("alerts"))
    yield e
    e.close()


def _subject_events(env: Env, event: str, key_hash: str) -> list[dict]:
    return [b for b in env.webhooks(event) if b["token"] == key_hash and b["event_group"] == "key"]


def test_soft_budget_alerts_once_over_many_requests(env):
    raw = env.key(key_alias="soft-bot", soft_budget=0.05, max_budget=100)
    token = hashlib.sha256(raw.encode()).hexdigest()
    for _ in range(15):
        env.chat(raw)
    assert wait_for(lambda: _subject_events(env, "threshold_crossed", token))
    time.sleep(0.5)  # later requests must not add alerts
    for _ in range(5):
        env.chat(raw)
    time.sleep(0.5)
    events = _subject_events(env, "threshold_crossed", token)
    assert len(events) == 1, events
    body = events[0]
    assert set(body) == BUDGET_FIELDS
    assert body["event_group"] == "key" and body["key_alias"] == "soft-bot" and body["soft_budget"] == 0.05
    assert body["max_budget"] == 100 and body["spend"] >= 0.05
    assert body["event_message"] == "Key Budget: Soft Budget Crossed"
    slack = [t for t in env.slack("budget_alerts") if "Soft Budget Crossed: key soft-bot" in t]
    assert len(slack) == 1, slack
    assert set(env.receiver.bodies("/slack")[0]) == {"text"}  # Slack's incoming-webhook body
    assert wait_for(lambda: any("Soft Budget Crossed: key soft-bot" in s for s in env.mail.subjects()))


def test_soft_budget_without_max_budget_uses_stored_spend(env):
    """No max_budget (no counter): the stored spend of the cached key (refreshed every key_cache_ttl) counts."""
    raw = env.key(key_alias="soft-only", soft_budget=0.03)
    token = hashlib.sha256(raw.encode()).hexdigest()
    deadline = time.monotonic() + 15
    while not _subject_events(env, "threshold_crossed", token) and time.monotonic() < deadline:
        env.chat(raw)
        time.sleep(0.2)
    events = _subject_events(env, "threshold_crossed", token)
    assert len(events) == 1 and events[0]["max_budget"] is None


def test_budget_crossed_once(env):
    raw = env.key(key_alias="capped", max_budget=0.03)
    token = hashlib.sha256(raw.encode()).hexdigest()
    refused = 0
    for _ in range(12):
        try:
            env.chat(raw)
        except openai.RateLimitError:
            refused += 1
    assert refused >= 5
    assert wait_for(lambda: _subject_events(env, "budget_crossed", token))
    time.sleep(0.5)
    events = _subject_events(env, "budget_crossed", token)
    assert len(events) == 1, events
    assert events[0]["max_budget"] == 0.03 and events[0]["spend"] >= 0.03
    assert events[0]["event_message"] == "Key Budget: Budget Crossed"


def test_team_soft_budget(env):
    team = httpx.post(env.gw.url + "/team/new", headers=ADMIN, json={"team_alias": "ml-team", "soft_budget": 0.02,
                                                                     "max_budget": 50}, timeout=10).json()
    raw = env.key(team_id=team["team_id"])
    for _ in range(6):
        env.chat(raw)
    events = wait_for(lambda: [b for b in env.webhooks("threshold_crossed") if b["event_group"] == "team"
                               and b["team_id"] == team["team_id"]])
    assert len(events) == 1
    assert events[0]["team_alias"] == "ml-team"  # looked up off the request path
    assert events[0]["event_message"] == "Team Budget: Soft Budget Crossed"


def test_customer_soft_budget(env):
    r = httpx.post(env.gw.url + "/customer/new", headers=ADMIN,
                   json={"user_id": "end-user-42", "soft_budget": 0.01, "max_budget": 50}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["soft_budget"] == 0.01
    for _ in range(6):
        env.client.chat.completions.create(model="priced-mock", user="end-user-42",
                                           messages=[{"role": "user", "content": "hi"}])
    events = wait_for(lambda: [b for b in env.webhooks("threshold_crossed") if b["event_group"] == "customer"])
    assert len(events) == 1
    assert events[0]["customer_id"] == "end-user-42" and events[0]["soft_budget"] == 0.01
    assert events[0]["event_message"] == "Customer Budget: Soft Budget Crossed"


def test_projected_limit_exceeded(env):
    raw = env.key(key_alias="fast-spender", max_budget=5, budget_duration="1h")
    token = hashlib.sha256(raw.encode()).hexdigest()
    time.sleep(0.6)  # projection_min_elapsed
    for _ in range(3):
        env.chat(raw)
    events = wait_for(lambda: _subject_events(env, "projected_limit_exceeded", token))
    assert len(events) == 1
    assert events[0]["projected_spend"] > 5 and events[0]["spend"] < 5
    assert events[0]["projected_exceeded_date"]


def test_provider_errors_raise_llm_exceptions_on_the_routed_url(env):
    key = env.key()
    for _ in range(3):
        with pytest.raises(openai.APIStatusError):
            env.chat(key, model="err-model", text="TRIGGER_500")
    texts = wait_for(lambda: env.slack("llm_exceptions", "/slack-exceptions"))
    assert len(texts) == 1  # request_alert_ttl: once per deployment and error kind
    assert "LLM API exception: model err-model" in texts[0] and "err-deployment" in texts[0]
    assert not env.slack("llm_exceptions")  # alert_to_webhook_url sent it elsewhere than SLACK_WEBHOOK_URL
    hooks = wait_for(lambda: env.webhooks(alert_type="llm_exceptions"))
    assert hooks[0]["details"]["Deployment"] == "err-deployment"
    # minor (2) then major (3) outage of that deployment, once each
    outages = wait_for(lambda: len(env.slack("outage_alerts")) >= 2 and env.slack("outage_alerts"))
    assert any(t.startswith("Minor outage: deployment err-deployment") for t in outages)
    assert any(t.startswith("Major outage: deployment err-deployment") for t in outages)
    assert len(outages) == 2


def test_slow_request_raises_llm_too_slow(env):
    env.chat(MASTER_KEY, model="slow-mock")
    texts = wait_for(lambda: env.slack("llm_too_slow"))
    assert len(texts) == 1 and "LLM request slower than 1 s: model slow-mock" in texts[0]


def test_hanging_request_alerts_while_in_flight(env):
    done = threading.Event()

    def call() -> None:
        env.chat(MASTER_KEY, model="hang-mock")
        done.set()

    thread = threading.Thread(target=call)
    thread.start()
    texts = wait_for(lambda: [t for t in env.slack("llm_requests_hanging") if "hang-mock" in t], timeout=5)
    assert texts and not done.is_set()  # raised while the request was still waiting for its answer
    thread.join(10)
    assert done.is_set()


def test_spend_anomaly(env):
    raw = env.key(key_alias="bursty")
    # three quiet windows (1 s each): one request in each
    for _ in range(3):
        env.chat(raw)
        time.sleep(1.0 - time.time() % 1.0 + 0.05)
    # then a burst inside one window
    for _ in range(12):
        env.chat(raw)
    texts = wait_for(lambda: [t for t in env.slack("spend_anomaly") if "key bursty" in t])
    assert texts, env.receiver.bodies("/slack")[-3:]
    assert "Baseline per window" in texts[0]


def test_daily_report(env):
    texts = wait_for(lambda: env.slack("daily_reports"), timeout=6)
    assert texts and "Top keys by spend" in texts[0] and "Slowest deployments" in texts[0]


def test_health_services_sends_a_test_alert_per_channel(env):
    before = env.receiver.count("/slack")
    r = httpx.get(env.gw.url + "/health/services", params={"service": "slack"}, headers=ADMIN, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "success"
    assert env.receiver.count("/slack") == before + 1
    assert "Test alert from Lockgate" in env.receiver.bodies("/slack")[-1]["text"]
    r = httpx.get(env.gw.url + "/health/services", params={"service": "webhook"}, headers=ADMIN, timeout=10)
    assert r.status_code == 200
    body = env.receiver.bodies("/webhook")[-1]
    assert set(body) == BUDGET_FIELDS and body["event_message"].startswith("Test alert from Lockgate")
    mails = len(env.mail.messages)
    r = httpx.get(env.gw.url + "/health/services", params={"service": "email"}, headers=ADMIN, timeout=10)
    assert r.status_code == 200
    assert len(env.mail.messages) >= mails + 1
    assert any("Test alert from Lockgate" in s for s in env.mail.subjects())
    assert env.mail.envelopes[-1] == ("lockgate@example.com", ["ops@example.com"])
    r = httpx.get(env.gw.url + "/health/services", params={"service": "pagerduty"}, headers=ADMIN, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "service"
    r = httpx.get(env.gw.url + "/health/services", headers={"Authorization": f"Bearer {env.key()}"}, timeout=10,
                  params={"service": "slack"})
    assert r.status_code == 403


def test_metrics_count_deliveries(env):
    text = httpx.get(env.gw.url + "/metrics", timeout=10).text
    assert 'lockgate_alerts_sent_total{alert_type="budget_alerts",channel="webhook"}' in text
    assert 'lockgate_alerts_sent_total{alert_type="budget_alerts",channel="email"}' in text
    assert 'lockgate_alerts_sent_total{alert_type="test",channel="slack"} 1.0' in text


def test_no_alert_carries_a_raw_key_or_prompt_text(env):
    time.sleep(0.3)
    blobs = [str(b) for _, b, _ in env.receiver.posts] + [m.as_string() for m in env.mail.messages]
    assert len(blobs) > 10
    for blob in blobs:
        assert PROMPT_MARK not in blob and MASTER_KEY not in blob
        for raw in env.raw_keys:
            assert raw not in blob
    log = env.gw.log()
    assert all(raw not in log for raw in env.raw_keys)


def test_a_failing_receiver_is_retried_counted_and_never_slows_requests(mocks, tmp_path):
    receiver = Receiver()
    host = MockHost()
    url = host.start("receiver", receiver.create_app).url
    cfg = alert_config(mocks, url, send_timeout=1, max_attempts=3)
    cfg["general_settings"]["alerting"] = ["slack", "webhook"]
    cfg["general_settings"]["alert_to_webhook_url"] = {}
    cfg["general_settings"]["alert_types"] = ["budget_alerts"]
    gw = start_gateway(cfg, tmp_path, {"SLACK_WEBHOOK_URL": url + "/fail", "WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/x"})
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        r = httpx.post(gw.url + "/key/generate", headers=ADMIN, json={"soft_budget": 0.001, "max_budget": 100},
                       timeout=10)
        key = r.json()["key"]
        keyed = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)
        latencies = []
        for i in range(8):
            started = time.perf_counter()
            (keyed if i % 2 else client).chat.completions.create(
                model="priced-mock", messages=[{"role": "user", "content": "hi"}])
            latencies.append(time.perf_counter() - started)
        assert max(latencies) < 0.5, latencies  # delivery retries (0.1 + 0.2 s back-off) are not the requests'
        assert wait_for(lambda: receiver.count("/fail") >= 3)
        time.sleep(0.5)
        assert receiver.count("/fail") == 3  # max_attempts, then given up
        metrics = wait_for(lambda: (t := httpx.get(gw.url + "/metrics", timeout=10).text)
                           and 'lockgate_alerts_failed_total{alert_type="budget_alerts",channel="webhook"} 1.0' in t
                           and t)
        assert 'lockgate_alerts_failed_total{alert_type="budget_alerts",channel="slack"} 1.0' in metrics
        assert 'lockgate_alerts_retries_total{channel="slack"} 2.0' in metrics
        assert 'lockgate_alerts_retries_total{channel="webhook"} 2.0' in metrics
        r = httpx.get(gw.url + "/health/services", params={"service": "slack"}, headers=ADMIN, timeout=10)
        assert r.status_code == 502 and r.json()["error"]["code"] == "alert_delivery_failed"
        r = httpx.get(gw.url + "/health/services", params={"service": "email"}, headers=ADMIN, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["code"] == "service_not_configured"
    finally:
        gw.process.terminate()
        gw.process.wait(10)
        host.stop()
