"""Alert settings and rules on their own: config parsing and its errors, the anomaly rule, the outage
thresholds, dedupe, and that a gateway without ``general_settings.alerting`` imports and runs nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lockgate.alerts.anomaly import SpendRates
from lockgate.alerts.dedupe import Dedupe
from lockgate.alerts.model import Alert
from lockgate.alerts.outages import Outages
from lockgate.alerts.settings import ALERT_TYPES, ARGS, parse
from lockgate.config import ConfigError, from_dict


def test_defaults_and_env():
    warnings: list[str] = []
    env = {"SLACK_WEBHOOK_URL": "https://hooks.example/slack", "WEBHOOK_URL": "https://hooks.example/w",
           "SMTP_HOST": "mail.example", "SMTP_PORT": "2525", "SMTP_TLS": "False", "SMTP_USERNAME": "u",
           "SMTP_PASSWORD": "pw-7c1e", "SMTP_SENDER_EMAIL": "gw@example.com", "ALERTING_EMAIL_TO": "a@x.org, b@x.org"}
    s = parse({"alerting": ["slack", "webhook", "email"]}, warnings, env)
    assert s is not None and s.channels == ["slack", "webhook", "email"]
    assert s.threshold == 300 and s.types == frozenset(ALERT_TYPES) and s.args == ARGS
    assert s.slack_url == env["SLACK_WEBHOOK_URL"] and s.webhook_url == env["WEBHOOK_URL"]
    assert s.smtp is not None and (s.smtp.host, s.smtp.port, s.smtp.tls) == ("mail.example", 2525, False)
    assert s.smtp.recipients == ["a@x.org", "b@x.org"] and s.smtp.sender == "gw@example.com"
    assert "pw-7c1e" not in repr(s.smtp) and "hooks.example" not in repr(s)  # secrets stay out of repr()
    assert warnings == []


def test_litellm_keys():
    warnings: list[str] = []
    s = parse({"alerting": ["slack"], "alerting_threshold": 30, "alert_types": ["budget_alerts", "new_model_added"],
               "alert_to_webhook_url": {"budget_alerts": "https://a.example/1",
                                        "llm_exceptions": ["https://a.example/2", "https://a.example/3"]},
               "alerting_args": {"budget_alert_ttl": 10, "outage_alert_ttl": 5, "max_outage_alert_list_size": 7,
                                 "region_outage_alert_ttl": 60},
               "spend_report_frequency": "2d"}, warnings, {})
    assert s is not None
    assert s.threshold == 30 and s.types == frozenset({"budget_alerts"})
    assert s.routes == {"budget_alerts": ["https://a.example/1"],
                        "llm_exceptions": ["https://a.example/2", "https://a.example/3"]}
    assert s.arg("budget_alert_ttl") == 10 and s.arg("max_outage_alert_list_size") == 7
    assert s.spend_report_frequency == 2 * 86400
    assert any("new_model_added" in w for w in warnings)
    assert any("alerting_args.region_outage_alert_ttl" in w for w in warnings)


@pytest.mark.parametrize("general, message", [
    ({"alerting": "slack", "alert_types": ["budget_alert"]}, "unknown alert type"),
    ({"alerting": ["slack"], "alerting_threshold": 0}, "alerting_threshold"),
    ({"alerting": ["slack"], "alerting_args": {"anomaly_window": "soon"}}, "anomaly_window"),
    ({"alerting": ["slack"], "alerting_args": {"queue_size": 0}}, "queue_size"),
    ({"alerting": ["slack"], "alert_to_webhook_url": {"budget_alerts": "file:///etc/passwd"}}, "http(s) URL"),
    ({"alerting": ["slack"], "spend_report_frequency": "weekly"}, "spend_report_frequency"),
])
def test_bad_settings_fail_at_start_naming_the_key(general, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict({"general_settings": general})


def test_unknown_channel_and_missing_receivers_are_warned():
    settings = from_dict({"general_settings": {"alerting": ["slack", "pagerduty", "email"]}})
    assert settings.alerts is not None and settings.alerts.channels == ["slack", "email"]
    text = "\n".join(settings.warnings)
    assert "general_settings.alerting: pagerduty" in text and "SLACK_WEBHOOK_URL" in text and "SMTP_HOST" in text


def test_not_configured_imports_nothing():
    code = ("import sys, lockgate.config as c, lockgate.gateway as g; s = c.from_dict({}); "
            "assert s.alerts is None; gw = g.Gateway(s); assert gw.alerts is None; "
            "assert not [m for m in sys.modules if m.startswith('lockgate.alerts')], sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_anomaly_rule():
    rates = SpendRates(window=60, horizon=240, factor=5, floor=1.0, min_windows=3, max_subjects=10)
    t = 6000.0
    for i in range(3):  # three windows of 0.5 USD: baseline 0.5
        assert rates.add("key:a", 0.5, t + i * 60) is None
    # window 4: 2.4 USD is under max(5 x 0.5, 1.0) = 2.5; 2.6 is over
    assert rates.add("key:a", 2.4, t + 180) is None
    hit = rates.add("key:a", 0.2, t + 181)
    assert hit is not None and hit[0] == int((t + 181) // 60)
    assert hit[1] == pytest.approx(2.6) and hit[2] == pytest.approx(0.5)
    # too little history: no alert however large the spend
    assert rates.add("key:new", 100.0, t) is None
    # the floor: a baseline of 0 still needs more than anomaly_min_spend
    for i in range(3):
        rates.add("key:idle", 0.0, t + i * 60)
    assert rates.add("key:idle", 0.9, t + 180) is None
    assert rates.add("key:idle", 0.2, t + 181) is not None


def test_anomaly_baseline_decays_over_idle_windows():
    rates = SpendRates(window=60, horizon=120, factor=2, floor=0.0, min_windows=1, max_subjects=10)
    rates.add("s", 10.0, 0)
    rates.add("s", 10.0, 60)  # closes window 0: baseline 10
    rates.add("s", 0.0, 60 * 5)  # closes window 1 (10), then 3 empty windows halve it each time (alpha 0.5)
    assert rates._rates["s"].baseline == pytest.approx(10 * 0.5 ** 3)


def test_subjects_are_bounded():
    rates = SpendRates(window=60, horizon=120, factor=2, floor=0.0, min_windows=1, max_subjects=3)
    for i in range(10):
        rates.add(f"s{i}", 1.0, 0)
    assert list(rates._rates) == ["s7", "s8", "s9"]


def test_outage_thresholds():
    outages = Outages(window=10, minor=2, major=3, max_list=100)
    assert outages.add("d", 0) is None
    assert outages.add("d", 1) == "minor"
    assert outages.add("d", 2) == "major"
    assert outages.add("d", 30) is None  # the window moved on
    assert outages.failures == {"d": 4}


def test_local_dedupe():
    dedupe = Dedupe()
    assert dedupe.first_here("k", 60) and not dedupe.first_here("k", 60)
    assert dedupe.first_here("k2", 0) and dedupe.first_here("k2", 0)  # expired at once


def test_alert_text_and_generic_webhook_body():
    alert = Alert(type="llm_too_slow", title="slow", key="k", ttl=1, level="Low", details={"Latency (s)": 1.5,
                                                                                          "None": None})
    assert alert.text() == "slow\nLevel: Low\nType: llm_too_slow\nLatency (s): 1.5"
    assert alert.webhook_body() == {"event": "llm_too_slow", "event_group": "proxy", "event_message": "slow",
                                    "level": "Low", "alert_type": "llm_too_slow", "details": {"Latency (s)": 1.5}}


async def test_a_full_queue_drops_and_counts():
    from prometheus_client import CollectorRegistry

    from lockgate.alerts.delivery import AlertMetrics, Delivery

    async def claim(alert: Alert) -> bool:
        return True

    async def enrich(alert: Alert) -> None:
        return None

    registry = CollectorRegistry()
    delivery = Delivery({}, AlertMetrics(registry), queue_size=1, max_attempts=1, backoff=0, claim=claim,
                        enrich=enrich)
    alert = Alert(type="llm_too_slow", title="t", key="k", ttl=1)
    assert delivery.put(alert) and not delivery.put(alert)  # no worker started: the second finds it full
    assert registry.get_sample_value("lockgate_alerts_dropped_total", {"reason": "queue_full"}) == 1.0
