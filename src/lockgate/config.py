"""Configuration: LiteLLM Proxy's config.yaml read as-is, resolved into typed settings.

Reading is permissive (LiteLLM's schema, ``os.environ/NAME`` values, unknown
keys reported once as warnings); the result is strict and typed: a list of
``Deployment`` and one ``Settings``.  Lockgate's own additions live under the
top-level ``lockgate_settings`` section and in a few documented
``litellm_params`` keys (see docs/configuration.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import yaml

from .auth import settings as auth_settings
from .auth.settings import JWTSettings, SSOSettings
from .cache import settings as cache_settings
from .cache.settings import CacheSettings
from .guardrails import config as guardrail_config
from .guardrails.config import GuardrailSpec
from .observability import options as metrics_options
from .observability.options import MetricsOptions

if TYPE_CHECKING:
    from .alerts.settings import AlertSettings

log = logging.getLogger("lockgate.config")


class ConfigError(Exception):
    pass


# keys Lockgate reads today; anything else is reported as "not implemented yet"
KNOWN_PARAMS = {
    "model", "api_key", "api_base", "base_url", "api_version", "timeout", "stream_timeout",
    "rpm", "tpm", "weight", "order", "mock_response", "mock_latency_ms", "drop_params",
    "custom_llm_provider", "max_tokens", "temperature", "top_p",
    "azure_ad_token",
    # Bedrock and Vertex AI: kept in Deployment.extra
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region_name",
    "aws_profile_name", "aws_bedrock_runtime_endpoint", "vertex_project", "vertex_location",
    "vertex_credentials", "guardrails",
}
EXTRA_PARAM_PREFIXES = ("aws_", "vertex_")
KNOWN_MODEL_INFO = {
    "id", "input_cost_per_token", "output_cost_per_token", "max_input_tokens",
    "max_output_tokens", "max_tokens", "mode", "base_model", "description",
    "cache_read_input_token_cost", "cache_creation_input_token_cost", "access_groups", "health_check",
}
KNOWN_GENERAL = {
    "master_key", "request_timeout", "background_health_checks", "health_check_interval",
    "redis_url", "redis_host", "redis_port", "redis_username", "redis_password",
    "database_url", "max_budget", "budget_duration",
    "max_request_size_mb", "max_response_size_mb",
    "reject_unpriced_for_budgets",
    "shutdown_grace_seconds", "graceful_shutdown_timeout",
    "ui", "ui_session_duration", "ui_timezone",  # the admin UI (docs/ui.md)
    "alerting", "alerting_threshold", "alert_types", "alert_to_webhook_url", "alerting_args",
    "spend_report_frequency",  # alerts (docs/alerts.md)
    "enable_jwt_auth", "litellm_jwtauth", "sso",  # docs/sso.md
}
KNOWN_LITELLM = {"drop_params", "request_timeout", "set_verbose", "json_logs",
                 "callbacks", "success_callback", "failure_callback", "cache", "cache_params",
                 "require_auth_for_metrics_endpoint", "turn_off_message_logging", "default_internal_user_params"}
KNOWN_ROUTER = {
    "routing_strategy", "model_group_alias", "num_retries", "retry_policy", "retry_after",
    "allowed_fails", "cooldown_time", "disable_cooldowns", "fallbacks", "context_window_fallbacks",
    "content_policy_fallbacks", "default_fallbacks", "timeout", "stream_timeout",
    "redis_host", "redis_port", "redis_username", "redis_password", "redis_url",
}
KNOWN_LOCKGATE = {
    "access_log", "max_request_body_mb", "allowed_api_bases", "upstream_max_connections",
    "upstream_thread_batch_at", "upstream_plain_http_on_loop", "connect_timeout", "database_path", "routing_rules", "governance",
    "callback_timeout", "callback_log_timeout", "callback_queue_size", "callback_workers",
    "otel_forward_traceparent",
    "otel_export_content", "metrics",  # docs/observability.md, docs/metrics.md
}
KNOWN_TOP = {
    "model_list", "general_settings", "litellm_settings", "router_settings",
    "environment_variables", "lockgate_settings", "guardrails",
}
PARAMS_SENT_AS_DEFAULTS = ("max_tokens", "temperature", "top_p")


@dataclass
class Deployment:
    model_name: str  # the name clients ask for (the model group)
    provider: str  # registry key: openai, anthropic, gemini, groq, mock, ...
    model: str  # the upstream model id
    id: str
    api_key: str | None = field(default=None, repr=False)  # secrets stay out of repr() (and so out of logs)
    api_base: str | None = None
    api_version: str | None = None
    azure_ad_token: str | None = field(default=None, repr=False)  # Microsoft Entra ID bearer token (azure/, azure_ai/)
    timeout: float | None = None
    stream_timeout: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    weight: float = 1.0
    order: int | None = None
    mock_response: str | None = None
    mock_latency_ms: float = 0.0
    drop_params: bool | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # params sent unless the client sets them
    model_info: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # provider-specific litellm_params (aws_*, vertex_*)
    guardrails: list[str] = field(default_factory=list)  # litellm_params.guardrails: attached to this model

    def masked(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "provider": self.provider,
            "model": self.model,
            "id": self.id,
            "api_base": self.api_base,
            "api_key": mask(self.api_key),
        }


@dataclass
class PluginSettings:
    """User plugins (``module.instance`` paths of LiteLLM custom callbacks) and their bounds."""

    callbacks: list[str] = field(default_factory=list)  # litellm_settings.callbacks: every hook
    success_callbacks: list[str] = field(default_factory=list)  # litellm_settings.success_callback
    failure_callbacks: list[str] = field(default_factory=list)  # litellm_settings.failure_callback
    timeout: float = 5.0  # lockgate_settings.callback_timeout: each pre-call / moderation hook
    log_timeout: float = 10.0  # lockgate_settings.callback_log_timeout: each success / failure hook
    queue_size: int = 1000  # lockgate_settings.callback_queue_size: finished requests waiting for their events
    workers: int = 4  # lockgate_settings.callback_workers: events delivered at once

    @property
    def configured(self) -> bool:
        return bool(self.callbacks or self.success_callbacks or self.failure_callbacks)


@dataclass
class Settings:
    deployments: list[Deployment]
    master_key: str | None = field(default=None, repr=False)  # secret: never in repr()
    drop_params: bool = False
    request_timeout: float = 600.0
    stream_timeout: float | None = None  # default idle limit of streams (router_settings.stream_timeout)
    connect_timeout: float = 10.0
    access_log: bool = True
    max_request_body: int = 32 * 1024 * 1024  # bytes, from general_settings.max_request_size_mb
    max_response_body: int = 64 * 1024 * 1024  # bytes, from general_settings.max_response_size_mb
    allowed_api_bases: list[str] = field(default_factory=list)
    upstream_max_connections: int | None = None
    upstream_thread_batch_at: int = 4  # requests in flight that batch the upstream I/O thread (transport/scheduling.py)
    upstream_plain_http_on_loop: bool = True  # http:// upstreams on the event loop (transport/plain.py)
    router_settings: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold redis_password
    routing_rules: list[dict[str, Any]] = field(default_factory=list)
    redis_url: str | None = field(default=None, repr=False)  # shared state (routing, counters); may hold a password
    background_health_checks: bool = False
    health_check_interval: float = 300.0
    database_url: str | None = field(default=None, repr=False)  # general_settings.database_url (else DATABASE_URL,
    # else SQLite); may hold a password
    database_path: str | None = None  # lockgate_settings.database_path: the SQLite file (default lockgate.db)
    max_budget: float | None = None  # general_settings.max_budget: the global proxy budget
    budget_duration: str | None = None  # general_settings.budget_duration: its reset period
    reject_unpriced_for_budgets: bool = False  # refuse budget-limited requests on deployments without a price
    governance: dict[str, Any] = field(default_factory=dict)  # lockgate_settings.governance (enforcement knobs)
    plugins: PluginSettings = field(default_factory=PluginSettings)
    cache: CacheSettings | None = None  # litellm_settings.cache + cache_params (docs/caching.md); None: off
    otel: bool = False  # litellm_settings.callbacks has "otel": OpenTelemetry traces (docs/observability.md)
    langfuse_otel: bool = False  # "langfuse_otel": the same spans to Langfuse's OTLP endpoint
    otel_forward_traceparent: bool = False  # lockgate_settings: each attempt's trace context sent to the provider
    otel_export_content: bool = False  # lockgate_settings: prompt / answer on spans (masked), unless the next is set
    turn_off_message_logging: bool = False  # litellm_settings: no prompt or answer text in any export
    require_auth_for_metrics: bool = False  # litellm_settings.require_auth_for_metrics_endpoint (docs/metrics.md)
    metrics: MetricsOptions = field(default_factory=MetricsOptions)  # lockgate_settings.metrics (docs/metrics.md)
    guardrails: list[GuardrailSpec] = field(default_factory=list)  # the top-level guardrails: list
    warnings: list[str] = field(default_factory=list)
    source: Path | None = None
    shutdown_grace_seconds: float = 5.0  # general_settings: on SIGTERM, readiness 503 while still serving (shutdown.py)
    graceful_shutdown_timeout: float = 30.0  # general_settings: then in-flight requests and streams get this long
    ui: bool = True  # general_settings.ui: the admin UI at /ui (docs/ui.md)
    ui_session_duration: str = "12h"  # general_settings.ui_session_duration: a UI session's lifetime
    ui_timezone: str = "UTC"  # general_settings.ui_timezone: the IANA zone the UI's days are counted in
    alerts: AlertSettings | None = None  # general_settings.alerting and companions (docs/alerts.md); None: off
    jwt_auth: JWTSettings | None = None  # general_settings.enable_jwt_auth + litellm_jwtauth (docs/sso.md)
    sso: SSOSettings | None = None  # general_settings.sso or GENERIC_* (OpenID Connect sign-in, docs/sso.md)

    def groups(self) -> dict[str, list[Deployment]]:
        out: dict[str, list[Deployment]] = {}
        for dep in self.deployments:
            out.setdefault(dep.model_name, []).append(dep)
        return out


def mask(secret: str | None) -> str | None:
    if not secret:
        return secret
    return secret[:3] + "..." + secret[-2:] if len(secret) > 8 else "***"


def resolve_env(value: Any) -> Any:
    """Replace ``os.environ/NAME`` strings (at any depth) by the variable's value."""
    if isinstance(value, str) and value.startswith("os.environ/"):
        return os.environ.get(value[len("os.environ/"):])
    if isinstance(value, dict):
        return {k: resolve_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v) for v in value]
    return value


def load(path: str | Path) -> Settings:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    settings = from_dict(raw)
    settings.source = path
    return settings


def from_dict(raw: dict[str, Any]) -> Settings:
    warnings: list[str] = []
    for name, value in (raw.get("environment_variables") or {}).items():
        os.environ.setdefault(str(name), str(value))
    _unknown(warnings, "", raw, KNOWN_TOP)
    general = _section(raw, "general_settings", warnings)
    litellm = _section(raw, "litellm_settings", warnings)
    router = _section(raw, "router_settings", warnings)
    ours = _section(raw, "lockgate_settings", warnings)
    _unknown(warnings, "router_settings.", router, KNOWN_ROUTER)
    _unknown(warnings, "lockgate_settings.", ours, KNOWN_LOCKGATE)
    _unknown(warnings, "general_settings.", general, KNOWN_GENERAL)
    _unknown(warnings, "litellm_settings.", litellm, KNOWN_LITELLM)

    master_key = general.get("master_key")
    if "master_key" in general and not master_key:
        raise ConfigError("general_settings.master_key is set but resolves to nothing (missing environment variable?)")
    deployments = [_deployment(i, entry, warnings) for i, entry in enumerate(raw.get("model_list") or [])]
    timeout = general.get("request_timeout") or litellm.get("request_timeout") or router.get("timeout") or 600
    try:
        cache = cache_settings.parse(litellm.get("cache"), litellm.get("cache_params"), redis_url(general, router),
                                     warnings)
    except cache_settings.CacheConfigError as exc:
        raise ConfigError(str(exc)) from None
    guardrails: list[GuardrailSpec] = []
    try:
        if raw.get("guardrails") is not None:  # the types are imported only when guardrails are configured
            guardrails = _guardrails(raw["guardrails"], warnings)
    except guardrail_config.GuardrailConfigError as exc:
        raise ConfigError(str(exc)) from None
    return Settings(
        deployments=deployments,
        master_key=str(master_key) if master_key else None,
        drop_params=bool(litellm.get("drop_params", False)),
        request_timeout=float(timeout),
        stream_timeout=_float(router.get("stream_timeout")),
        connect_timeout=float(ours.get("connect_timeout", 10)),
        access_log=bool(ours.get("access_log", True)),
        max_request_body=_megabytes(general, "max_request_size_mb",
                                    ours.get("max_request_body_mb", DEFAULT_REQUEST_MB)),
        max_response_body=_megabytes(general, "max_response_size_mb", DEFAULT_RESPONSE_MB),
        allowed_api_bases=list(ours.get("allowed_api_bases") or []),
        upstream_max_connections=ours.get("upstream_max_connections"),
        upstream_thread_batch_at=int(ours.get("upstream_thread_batch_at", 4)),
        upstream_plain_http_on_loop=bool(ours.get("upstream_plain_http_on_loop", True)),
        router_settings=_router_settings(router),
        routing_rules=list(ours.get("routing_rules") or []),
        redis_url=redis_url(general, router),
        background_health_checks=bool(general.get("background_health_checks", False)),
        health_check_interval=float(general.get("health_check_interval", 300)),
        database_url=general.get("database_url") or None,
        database_path=ours.get("database_path") or None,
        max_budget=_float(general.get("max_budget")),
        budget_duration=_budget_duration(general.get("budget_duration")),
        reject_unpriced_for_budgets=bool(general.get("reject_unpriced_for_budgets", False)),
        governance=dict(ours.get("governance") or {}),
        plugins=_plugin_settings(litellm, ours, warnings),
        cache=cache,
        otel="otel" in _names(litellm.get("callbacks")),
        langfuse_otel="langfuse_otel" in _names(litellm.get("callbacks")),
        otel_forward_traceparent=bool(ours.get("otel_forward_traceparent", False)),
        otel_export_content=bool(ours.get("otel_export_content", False)),
        turn_off_message_logging=bool(litellm.get("turn_off_message_logging", False)),
        require_auth_for_metrics=bool(litellm.get("require_auth_for_metrics_endpoint", False)),
        metrics=_metrics_options(ours.get("metrics")),
        guardrails=guardrails,
        warnings=warnings,
        shutdown_grace_seconds=_seconds(general, "shutdown_grace_seconds", 5),
        graceful_shutdown_timeout=_seconds(general, "graceful_shutdown_timeout", 30),
        ui=bool(general.get("ui", True)),
        ui_session_duration=_ui_session_duration(general.get("ui_session_duration", "12h")),
        ui_timezone=_ui_timezone(general.get("ui_timezone") or "UTC"),
        alerts=_alerts(general, warnings),
        jwt_auth=_auth(auth_settings.jwt_settings, general, warnings, master_key),
        sso=_auth(auth_settings.sso_settings, general, warnings, master_key, litellm),
    )


def _auth(parse: Any, general: dict[str, Any], warnings: list[str], master_key: Any, *more: Any) -> Any:
    """JWT auth / SSO settings (auth/settings.py); both need a master key (without one the gateway is open)."""
    try:
        found = parse(general, *more, warnings) if more else parse(general, warnings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if found is not None and not master_key:
        what = "enable_jwt_auth" if isinstance(found, JWTSettings) else "SSO (general_settings.sso / GENERIC_*)"
        raise ConfigError(f"{what} needs general_settings.master_key (without one every request is accepted)")
    return found


def _alerts(general: dict[str, Any], warnings: list[str]) -> AlertSettings | None:
    """``general_settings.alerting``: the alert settings are imported only when it is set."""
    if not general.get("alerting"):
        return None
    from .alerts import settings as alert_settings

    try:
        return alert_settings.parse(general, warnings)
    except alert_settings.AlertConfigError as exc:
        raise ConfigError(str(exc)) from None


def _ui_timezone(value: Any) -> str:
    """An IANA zone name (``Europe/Paris``) or UTC: the days of the UI's usage and overview pages."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = str(value)
    if name.upper() != "UTC":
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"general_settings.ui_timezone: unknown timezone {name!r} (an IANA name such as "
                              "Europe/Paris)") from None
    return name


def _ui_session_duration(value: Any) -> str:
    from .state.durations import is_valid

    if not is_valid(str(value)):
        raise ConfigError(f"general_settings.ui_session_duration: invalid duration {value!r} (use 30m, 12h, 7d)")
    return str(value)


def _metrics_options(raw: Any) -> MetricsOptions:
    try:
        return metrics_options.parse(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _seconds(general: dict[str, Any], key: str, default: float) -> float:
    value = general.get(key, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"general_settings.{key}: {value!r} is not a number of seconds") from None
    if not 0 <= seconds < float("inf"):  # NaN fails too
        raise ConfigError(f"general_settings.{key}: must be 0 or more seconds")
    return seconds


def _guardrails(raw: Any, warnings: list[str]) -> list[GuardrailSpec]:
    """The top-level ``guardrails:`` list; each type's own fields checked now (a bad entity, pattern or
    regex fails at start, naming the guardrail)."""
    from .guardrails.registry import TYPES

    specs = guardrail_config.parse(raw, frozenset(TYPES), warnings, {name: t.fields for name, t in TYPES.items()})
    for spec in specs:
        try:
            TYPES[spec.type].build(spec, None)
        except (ValueError, TypeError) as exc:
            raise guardrail_config.GuardrailConfigError(f"guardrail {spec.name!r}: {exc}") from None
    return specs


DEFAULT_REQUEST_MB = 32  # general_settings.max_request_size_mb (LiteLLM has no default)
DEFAULT_RESPONSE_MB = 64  # general_settings.max_response_size_mb


def _megabytes(general: dict[str, Any], key: str, default: Any) -> int:
    """A size in MB (``general_settings.<key>``; the older ``lockgate_settings.max_request_body_mb``
    is the default of the request size) as bytes."""
    value = general.get(key, default)
    try:
        size = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"general_settings.{key}: {value!r} is not a number of megabytes") from None
    if size <= 0:
        raise ConfigError(f"general_settings.{key}: must be more than 0")
    return int(size * 1024 * 1024)


def redis_url(general: dict[str, Any], router: dict[str, Any]) -> str | None:
    """Redis from ``general_settings.redis_url``, ``router_settings.redis_url`` or
    ``redis_host``/``redis_port``/``redis_username``/``redis_password``, else the REDIS_URL / REDIS_HOST
    environment.  The username and password are percent-encoded into the URL (``p@ss:w/rd#`` stays that)."""
    url = general.get("redis_url") or router.get("redis_url") or os.environ.get("REDIS_URL")
    if url:
        return str(url)
    host = router.get("redis_host") or general.get("redis_host") or os.environ.get("REDIS_HOST")
    if not host:
        return None
    port = router.get("redis_port") or general.get("redis_port") or os.environ.get("REDIS_PORT") or 6379
    password = router.get("redis_password") or general.get("redis_password") or os.environ.get("REDIS_PASSWORD")
    username = router.get("redis_username") or general.get("redis_username") or os.environ.get("REDIS_USERNAME")
    return redis_url_of(host, port, username, password)


def redis_url_of(host: Any, port: Any, username: Any, password: Any) -> str:
    """``redis://user:password@host:port/0``, the username and password percent-encoded."""
    auth = ""
    if username or password:
        auth = quote(str(username or ""), safe="") + (":" + quote(str(password), safe="") if password else "") + "@"
    return f"redis://{auth}{host}:{port}/0"


def _plugin_settings(litellm: dict[str, Any], ours: dict[str, Any], warnings: list[str]) -> PluginSettings:
    """``module.instance`` entries are plugins; LiteLLM's built-in integrations (no dot) are reported."""
    found: dict[str, list[str]] = {}
    for name in ("callbacks", "success_callback", "failure_callback"):
        value = litellm.get(name) or []
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
            raise ConfigError(f"litellm_settings.{name} must be a name or a list of names")
        found[name] = [e for e in entries if "." in e]
        builtin = [e for e in entries if "." not in e and not (name == "callbacks" and e in ("otel", "langfuse_otel"))]
        if builtin:
            warnings.append(f"not implemented yet, ignored: litellm_settings.{name}: {', '.join(builtin)}")
    opts = PluginSettings(found["callbacks"], found["success_callback"], found["failure_callback"],
                          float(ours.get("callback_timeout", 5)), float(ours.get("callback_log_timeout", 10)),
                          int(ours.get("callback_queue_size", 1000)), int(ours.get("callback_workers", 4)))
    if opts.timeout <= 0 or opts.log_timeout <= 0 or opts.queue_size < 1 or opts.workers < 1:
        raise ConfigError("lockgate_settings.callback_timeout / callback_log_timeout must be > 0, "
                          "callback_queue_size / callback_workers >= 1")
    return opts


def _names(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]


def _router_settings(router: dict[str, Any]) -> dict[str, Any]:
    from .routing.strategies import STRATEGIES

    strategy = router.get("routing_strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise ConfigError(f"router_settings.routing_strategy {strategy!r} is not one of {sorted(STRATEGIES)}")
    return router


def _section(raw: dict[str, Any], name: str, warnings: list[str]) -> dict[str, Any]:
    value = resolve_env(raw.get(name) or {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping")
    return value


def _unknown(warnings: list[str], prefix: str, section: dict[str, Any], known: set[str]) -> None:
    extra = sorted(k for k in section if k not in known)
    if extra:
        warnings.append(f"not implemented yet, ignored: {', '.join(prefix + k for k in extra)}")


def _deployment(index: int, entry: Any, warnings: list[str]) -> Deployment:
    where = f"model_list[{index}]"
    if not isinstance(entry, dict) or not entry.get("model_name"):
        raise ConfigError(f"{where}: needs model_name and litellm_params")
    params = resolve_env(entry.get("litellm_params") or {})
    info = resolve_env(entry.get("model_info") or {})
    model = params.get("model")
    if not model or not isinstance(model, str):
        raise ConfigError(f"{where} ({entry['model_name']}): litellm_params.model is required")
    provider, upstream = split_model(model, params.get("custom_llm_provider"))
    from .providers import registry

    if provider not in registry():
        raise ConfigError(f"{where}: unknown provider {provider!r} in {model!r}")
    _unknown(warnings, f"{where}.litellm_params.", params, KNOWN_PARAMS)
    _unknown(warnings, f"{where}.model_info.", info, KNOWN_MODEL_INFO)
    dep_id = str(info.get("id") or _stable_id(entry["model_name"], model, params.get("api_base"), index))
    return Deployment(
        model_name=str(entry["model_name"]),
        provider=provider,
        model=upstream,
        id=dep_id,
        api_key=params.get("api_key"),
        api_base=params.get("api_base") or params.get("base_url"),
        api_version=params.get("api_version"),
        azure_ad_token=params.get("azure_ad_token"),
        timeout=_float(params.get("timeout")),
        stream_timeout=_float(params.get("stream_timeout")),
        rpm=params.get("rpm"),
        tpm=params.get("tpm"),
        weight=float(params.get("weight", 1.0)),
        order=params.get("order"),
        mock_response=params.get("mock_response"),
        mock_latency_ms=float(params.get("mock_latency_ms", 0)),
        drop_params=params.get("drop_params"),
        defaults={k: params[k] for k in PARAMS_SENT_AS_DEFAULTS if k in params},
        model_info=info,
        extra={k: v for k, v in params.items() if k.startswith(EXTRA_PARAM_PREFIXES) and k in KNOWN_PARAMS},
        guardrails=[str(g) for g in params.get("guardrails") or []],
    )


def split_model(model: str, explicit: str | None = None) -> tuple[str, str]:
    if explicit:
        return explicit, model.split("/", 1)[1] if model.startswith(explicit + "/") else model
    if "/" in model:
        provider, rest = model.split("/", 1)
        return provider, rest
    return "openai", model


def _budget_duration(value: Any) -> str | None:
    if value in (None, ""):
        return None
    from .state.durations import is_valid

    if not is_valid(str(value)):
        raise ConfigError(f"general_settings.budget_duration: invalid duration {value!r} (use 30s, 1h, 1d, 7d, 30d, 1mo)")
    return str(value)


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _stable_id(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
