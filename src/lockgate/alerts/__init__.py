"""Alerts (docs/alerts.md): LiteLLM's ``general_settings.alerting`` (Slack, generic webhooks, email).

    settings.py    general_settings.alerting / alert_types / alerting_threshold / alert_to_webhook_url /
                   alerting_args -> AlertSettings (read only when alerting is set)
    service.py     Alerts: owned by the gateway; observe() per request (a few comparisons, an enqueue),
                   background checks (hanging requests, cooldowns, spend / database failures, reports)
    budgets.py     soft budget, max budget and projected-exceed alerts, once per budget period
    anomaly.py     spend_anomaly: spend rate far above the subject's own baseline
    outages.py     minor / major outages per deployment
    reports.py     daily and spend reports
    dedupe.py      one alert per key: in process, and across instances through Redis SET NX EX
    delivery.py    bounded queue, workers, retries with back-off, Prometheus counters
    channels/      slack, webhook, email senders and their registry
"""

from __future__ import annotations

from .service import Alerts

__all__ = ["Alerts"]
