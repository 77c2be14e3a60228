"""The gateway's resources, owned in one place and passed to every stage.

No module-level mutable state: the ASGI app creates one ``Gateway`` at start-up
(settings, provider registry, upstream pool, metrics, access log, hooks) and
the pipeline receives it explicitly.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import stages
from .config import Deployment, Settings
from .observability.access_log import AccessLog
from .observability.metrics import Metrics
from .providers import Provider, registry
from .routing.health import HealthChecks
from .routing.router import Router
from .routing.shared import SharedStats
from .routing.stats import CooldownCollector
from .transport.client import Upstream

if TYPE_CHECKING:
    import redis.asyncio

    from .alerts import Alerts
    from .context import RequestContext
    from .governance import Governance
    from .observability.tracing import Tracing
    from .plugins.runner import Plugins
    from .stages import After, Before
    from .stages.cache import CacheStage
    from .stages.guardrails import GuardrailStage
    from .state import SQLStore
    from .ui.data.daily import DailyJob

RequestHook = Callable[["Gateway", "RequestContext"], Awaitable[None]]
ErrorHook = Callable[["Gateway", "RequestContext", "Exception | None"], Awaitable[None]]


@dataclass
class Hooks:
    """Named extension points; each is a list of async callables run in order.

    ``pre_request(gateway, ctx)`` after authorization, before admission and the provider call: may
    change ``ctx.body`` / ``ctx.model`` or raise a ``LockgateError`` to refuse the request;
    ``post_response(gateway, ctx)`` after the answer went out;
    ``on_error(gateway, ctx, error)`` when a request failed (``error``: the ``LockgateError`` the client
    got, or None for a stream that failed after it started).
    An exception from ``post_response`` / ``on_error`` is logged and never reaches the client.
    User plugins (``litellm_settings.callbacks``, lockgate.plugins) register here; empty lists cost nothing.
    """

    pre_request: list[RequestHook] = field(default_factory=list)
    post_response: list[RequestHook] = field(default_factory=list)
    on_error: list[ErrorHook] = field(default_factory=list)


class Gateway:
    def __init__(self, settings: Settings, access_log: AccessLog | None = None) -> None:
        self.settings = settings
        self.providers: dict[str, Provider] = registry()
        self.groups: dict[str, list[Deployment]] = settings.groups()
        self.upstream = Upstream(settings.connect_timeout, settings.upstream_max_connections,
                                 settings.upstream_thread_batch_at, settings.upstream_plain_http_on_loop)
        self.metrics = Metrics(deployments=settings.deployments)
        self.access_log = access_log or AccessLog(enabled=settings.access_log)
        self.router = Router(settings)
        self._id_prefix = os.urandom(8).hex()
        self._id_counter = itertools.count(1)
        self.metrics.watch(CooldownCollector(self.router.stats))
        self.redis: redis.asyncio.Redis | None = None  # redis.asyncio.Redis when settings.redis_url is set
        self.health: HealthChecks | None = None
        self.hooks = Hooks()
        self.tracing: Tracing | None = None  # OpenTelemetry traces (litellm_settings.callbacks: otel), in start()
        self.plugins: Plugins | None = None  # lockgate.plugins.Plugins when callbacks are configured, loaded in start()
        self.alerts: Alerts | None = None  # lockgate.alerts.Alerts when general_settings.alerting is set (start())
        self.daily: DailyJob | None = None  # the UI's closed days of spend (ui/data/daily.py), when the UI is on
        # awaited as listener(kind, id) after a management change ("key", "user", "team", ...)
        self.change_listeners: list[Callable[[str, str], Any]] = []
        self.store: SQLStore | None = None  # lockgate.state.SQLStore, opened in start()
        self.governance: Governance | None = None  # lockgate.governance.Governance, created in start() after the store
        # the stages around the provider call (stages/; accounting is always there), started in start()
        self.before_stages: list[Before]
        self.after_stages: list[After]
        self.before_stages, self.after_stages = stages.build(self)
        # the response cache (stages/cache.py) when litellm_settings.cache is on: /cache/* administer it
        self.cache: CacheStage | None = next((s for s in self.before_stages if s.name == "cache"), None)  # type: ignore[assignment]
        self.guardrails: GuardrailStage | None = next(  # type: ignore[assignment]
            (s for s in self.before_stages if s.name == "guardrails"), None)

    def new_request_id(self) -> str:
        """32 hex characters: a random per-process prefix and a counter (no syscall per request)."""
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    async def start(self) -> None:
        """Open what needs the event loop (storage, counters); called once at start-up."""
        from .state import open_store

        source = self.settings.source
        self.store = await open_store(self.settings, source.parent if source else None)
        from .governance import Governance

        self.governance = Governance(self)
        await self.governance.start()
        if self.settings.redis_url:
            import redis.asyncio

            self.redis = redis.asyncio.from_url(self.settings.redis_url)
            self.router.shared = SharedStats(self.redis, self.router, self.governance.prefix + "routing:")
            await self.router.shared.start()
        if self.settings.plugins.configured:
            from .plugins import Plugins

            self.plugins = Plugins(self)
            await self.plugins.start()
        if self.settings.otel or self.settings.langfuse_otel:
            from .observability.tracing import Tracing

            self.tracing = Tracing(self.settings.otel_forward_traceparent, otlp=self.settings.otel,
                                   langfuse=self.settings.langfuse_otel, metrics=self.metrics)
        for stage in self.before_stages:
            await getattr(stage, "start", _nothing)()
        self.health = HealthChecks(self)
        if self.settings.background_health_checks:
            self.health.start_background(self.settings.health_check_interval)
        if self.settings.alerts is not None:  # general_settings.alerting (docs/alerts.md): else nothing runs
            from .alerts import Alerts

            self.alerts = Alerts(self, self.settings.alerts)
            await self.alerts.start()
        if self.settings.ui and self.store is not None:  # the usage page's closed days: else nothing runs
            from .ui.data import daily, zones

            self.daily = daily.DailyJob(self.store, zones.zone(self.settings.ui_timezone))
            self.daily.start()

    async def close(self) -> None:
        if self.daily is not None:
            await self.daily.close()
        if self.alerts is not None:
            await self.alerts.close()  # queued alerts get 2 s to go out
        for stage in self.before_stages:
            await getattr(stage, "close", _nothing)()
        if self.plugins is not None:
            await self.plugins.close()  # queued success / failure events delivered first
        if self.governance is not None:
            await self.governance.close()  # final spend flush before the store closes
        self.access_log.flush()
        self.metrics.flush()
        if self.tracing is not None:  # queued spans exported, for 3 s at most (a dead collector retries)
            await self.tracing.close_within(3.0)
        if self.health is not None:
            await self.health.close()
        if self.router.shared is not None:
            await self.router.shared.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.store is not None:
            await self.store.close()
        await self.upstream.close()


async def _nothing() -> None:
    return None
