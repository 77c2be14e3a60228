"""``general_settings.alerting`` and its companions (LiteLLM's names), resolved into ``AlertSettings``.

Read only when ``general_settings.alerting`` is set; otherwise ``Settings.alerts`` stays None and no
alerting code is imported or run.  Every key is documented in docs/alerts.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

CHANNELS = ("slack", "webhook", "email")
# LiteLLM's alert types Lockgate raises, and its own ``spend_anomaly``
ALERT_TYPES = (
    "budget_alerts", "llm_exceptions", "llm_too_slow", "llm_requests_hanging", "outage_alerts",
    "cooldown_deployment", "daily_reports", "spend_reports", "failed_tracking_spend", "db_exceptions",
    "spend_anomaly",
)
# LiteLLM alert types Lockgate knows but never raises (accepted, named in a start-up warning)
NOT_RAISED = ("new_model_added", "region_outage_alerts", "fallback_reports", "new_virtual_key_created",
              "virtual_key_created", "virtual_key_updated", "virtual_key_deleted", "new_team_created",
              "team_updated", "team_deleted", "new_internal_user_created", "internal_user_updated",
              "internal_user_deleted")
# alerting_args: name -> default (LiteLLM's where it has the name, Lockgate's own otherwise)
ARGS: dict[str, float] = {
    "daily_report_frequency": 43200,  # seconds between daily reports
    "report_check_interval": 3600,  # how often a due report is looked for
    "budget_alert_ttl": 86400,  # a budget alert without a budget period repeats at most this often
    "outage_alert_ttl": 60,  # the window outage errors are counted in
    "minor_outage_alert_threshold": 5,
    "major_outage_alert_threshold": 10,
    "max_outage_alert_list_size": 1000,  # error times kept per deployment
    # Lockgate's own
    "request_alert_ttl": 60,  # llm_exceptions / llm_too_slow / llm_requests_hanging / spend failures: once per
    "hanging_check_interval": 0,  # 0: min(alerting_threshold / 2, 30) seconds
    "cooldown_check_interval": 1,
    "projection_min_elapsed": 0,  # 0: min(3600 s, a tenth of the budget period)
    "anomaly_window": 300,
    "anomaly_horizon": 3600,
    "anomaly_factor": 5,
    "anomaly_min_spend": 1.0,
    "anomaly_min_windows": 3,
    "anomaly_max_subjects": 10000,
    "queue_size": 1000,
    "max_attempts": 4,
    "retry_backoff": 1.0,
    "send_timeout": 10,
}


class AlertConfigError(ValueError):
    pass


@dataclass
class SmtpSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "lockgate@localhost"
    tls: bool = False  # SMTP_TLS: STARTTLS after connecting (port 465: implicit TLS)
    recipients: list[str] = field(default_factory=list)


@dataclass
class AlertSettings:
    channels: list[str]
    threshold: float = 300.0  # alerting_threshold: seconds (llm_too_slow, llm_requests_hanging)
    types: frozenset[str] = frozenset(ALERT_TYPES)
    # alert type -> webhook URLs (alert_to_webhook_url): Slack-style {"text": ...} posts
    routes: dict[str, list[str]] = field(default_factory=dict, repr=False)
    slack_url: str | None = field(default=None, repr=False)  # SLACK_WEBHOOK_URL: may carry a token
    webhook_url: str | None = field(default=None, repr=False)  # WEBHOOK_URL
    smtp: SmtpSettings | None = None
    spend_report_frequency: float = 7 * 86400.0  # general_settings.spend_report_frequency
    args: dict[str, float] = field(default_factory=lambda: dict(ARGS))

    def enabled(self, alert_type: str) -> bool:
        return alert_type in self.types

    def arg(self, name: str) -> float:
        return self.args[name]


def parse(general: dict[str, Any], warnings: list[str], env: dict[str, str] | None = None) -> AlertSettings | None:
    """None when ``general_settings.alerting`` is absent or empty."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    assert env is not None
    channels = general.get("alerting")
    if not channels:
        return None
    if isinstance(channels, str):
        channels = [channels]
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise AlertConfigError("general_settings.alerting must be a list of channel names (slack, webhook, email)")
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        warnings.append(f"not implemented yet, ignored: general_settings.alerting: {', '.join(unknown)}")
    channels = [c for c in dict.fromkeys(channels) if c in CHANNELS]
    settings = AlertSettings(channels=channels)
    settings.threshold = _positive(general.get("alerting_threshold", 300), "alerting_threshold")
    settings.types = _types(general.get("alert_types"), warnings)
    settings.routes = _routes(general.get("alert_to_webhook_url"))
    settings.args = _args(general.get("alerting_args"), warnings)
    if general.get("spend_report_frequency") is not None:
        settings.spend_report_frequency = _duration_seconds(general["spend_report_frequency"])
    settings.slack_url = env.get("SLACK_WEBHOOK_URL") or env.get("ALERTING_WEBHOOK_URL") or None
    settings.webhook_url = env.get("WEBHOOK_URL") or None
    if "slack" in channels and not settings.slack_url and not settings.routes:
        warnings.append("general_settings.alerting has slack but SLACK_WEBHOOK_URL is not set: no Slack alert "
                        "will be sent")
    if "webhook" in channels and not settings.webhook_url:
        warnings.append("general_settings.alerting has webhook but WEBHOOK_URL is not set: no webhook alert "
                        "will be sent")
    if "email" in channels:
        settings.smtp = _smtp(env, general.get("alerting_args") or {}, warnings)
    return settings


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AlertConfigError(f"general_settings.{name}: {value!r} is not a number") from None
    if not 0 < number < float("inf"):
        raise AlertConfigError(f"general_settings.{name}: must be more than 0")
    return number


def _types(value: Any, warnings: list[str]) -> frozenset[str]:
    if value is None:
        return frozenset(ALERT_TYPES)
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise AlertConfigError("general_settings.alert_types must be a list of alert type names")
    unknown = [t for t in value if t not in ALERT_TYPES and t not in NOT_RAISED]
    if unknown:
        raise AlertConfigError(f"general_settings.alert_types: unknown alert type(s) {', '.join(unknown)} "
                               f"(known: {', '.join(ALERT_TYPES)})")
    never = [t for t in value if t in NOT_RAISED]
    if never:
        warnings.append(f"not implemented yet, ignored: general_settings.alert_types: {', '.join(never)}")
    return frozenset(t for t in value if t in ALERT_TYPES)


def _routes(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AlertConfigError("general_settings.alert_to_webhook_url must map alert types to a URL or a list of URLs")
    out: dict[str, list[str]] = {}
    for name, urls in value.items():
        if name not in ALERT_TYPES and name not in NOT_RAISED:
            raise AlertConfigError(f"general_settings.alert_to_webhook_url: unknown alert type {name!r}")
        listed = [urls] if isinstance(urls, str) else urls
        if not isinstance(listed, list) or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                                   for u in listed):
            raise AlertConfigError(f"general_settings.alert_to_webhook_url.{name}: an http(s) URL or a list of them")
        out[str(name)] = list(listed)
    return out


def _args(value: Any, warnings: list[str]) -> dict[str, float]:
    args = dict(ARGS)
    if value is None:
        return args
    if not isinstance(value, dict):
        raise AlertConfigError("general_settings.alerting_args must be a mapping")
    ignored = []
    for name, raw in value.items():
        if name == "email_to":  # read by _smtp
            continue
        if name not in ARGS:
            ignored.append(name)
            continue
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise AlertConfigError(f"general_settings.alerting_args.{name}: {raw!r} is not a number") from None
        if not 0 <= number < float("inf"):
            raise AlertConfigError(f"general_settings.alerting_args.{name}: must be 0 or more")
        args[name] = number
    if ignored:
        warnings.append("not implemented yet, ignored: " + ", ".join(f"general_settings.alerting_args.{n}"
                                                                      for n in sorted(ignored)))
    for name in ("queue_size", "max_attempts", "minor_outage_alert_threshold", "major_outage_alert_threshold",
                 "max_outage_alert_list_size", "anomaly_window", "anomaly_horizon", "report_check_interval",
                 "daily_report_frequency", "send_timeout", "cooldown_check_interval"):
        if args[name] <= 0:
            raise AlertConfigError(f"general_settings.alerting_args.{name}: must be more than 0")
    return args


def _duration_seconds(value: Any) -> float:
    from ..state import durations

    text = str(value)
    try:
        count, unit = durations.parse(text)
    except ValueError:
        raise AlertConfigError(f"general_settings.spend_report_frequency: invalid duration {text!r}") from None
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}[unit]
    return float(count * seconds)


def _smtp(env: dict[str, str], args: dict[str, Any], warnings: list[str]) -> SmtpSettings | None:
    host = env.get("SMTP_HOST")
    if not host:
        warnings.append("general_settings.alerting has email but SMTP_HOST is not set: no email alert will be sent")
        return None
    recipients = args.get("email_to") or env.get("ALERTING_EMAIL_TO") or []
    if isinstance(recipients, str):
        recipients = [r.strip() for r in recipients.split(",") if r.strip()]
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise AlertConfigError("general_settings.alerting_args.email_to must be an address or a list of addresses")
    if not recipients:
        warnings.append("general_settings.alerting has email but no recipient (alerting_args.email_to or "
                        "ALERTING_EMAIL_TO): no email alert will be sent")
    try:
        port = int(env.get("SMTP_PORT") or 587)
    except ValueError:
        raise AlertConfigError(f"SMTP_PORT: {env.get('SMTP_PORT')!r} is not a port number") from None
    tls = (env.get("SMTP_TLS") or "true").strip().lower() not in ("0", "false", "no", "off", "")
    return SmtpSettings(host=host, port=port, username=env.get("SMTP_USERNAME") or None,
                        password=env.get("SMTP_PASSWORD") or None,
                        sender=env.get("SMTP_SENDER_EMAIL") or "lockgate@localhost", tls=tls, recipients=recipients)
