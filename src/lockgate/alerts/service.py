"""``Alerts``: owned by the gateway, created only when ``general_settings.alerting`` is set.

Per request (``observe``, from the accounting stage, after the answer): a few comparisons and, when
something is worth an alert, one in-process dedupe lookup and a ``put_nowait`` on the delivery queue.
Everything else runs in background tasks: delivery (``delivery.py``), the in-flight check
(llm_requests_hanging), the watch loop (cooldowns, spend-writer and database failures) and the reports.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic, perf_counter, time
from typing import TYPE_CHECKING, Any

from .. import background
from ..errors import BudgetExceeded, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from ..governance.types import Principal
from . import budgets, channels, reports
from .anomaly import SpendRates
from .dedupe import Dedupe
from .delivery import AlertMetrics, Delivery
from .model import Alert, key_label
from .outages import Outages

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..errors import LockgateError
    from ..gateway import Gateway
    from .settings import AlertSettings

log = logging.getLogger("lockgate.alerts")

PROVIDER_FAILURES = (UpstreamError, UpstreamUnreachable, UpstreamTimeout)
CLIENT_KINDS = frozenset({"bad_request", "upstream_4xx"})
MESSAGE_LIMIT = 200  # characters of a provider error message an alert carries
SUBJECT_CACHE = 10_000  # principals whose budgeted levels are remembered


class Alerts:
    def __init__(self, gw: Gateway, settings: AlertSettings) -> None:
        self.gw = gw
        self.settings = settings
        a = settings.arg
        on = settings.enabled
        self.senders = channels.build(settings, gw.upstream)
        self.metrics = AlertMetrics(gw.metrics.registry)
        prefix = gw.governance.prefix if gw.governance is not None else "lockgate:"
        self.dedupe = Dedupe(gw.redis, prefix)
        self.delivery = Delivery(self.senders, self.metrics, queue_size=int(a("queue_size")),
                                 max_attempts=int(a("max_attempts")), backoff=a("retry_backoff"),
                                 claim=self._claim, enrich=self._enrich)
        self.threshold = settings.threshold
        self.request_ttl = a("request_alert_ttl")
        self.budgets = on("budget_alerts")
        self.projection_min = a("projection_min_elapsed")
        self.budget_ttl = a("budget_alert_ttl")
        # token hash -> (principal snapshot, its levels that have a budget)
        self._subjects: dict[str, tuple[Principal, list[budgets.Subject]]] = {}
        self.exceptions = on("llm_exceptions")
        self.slow = on("llm_too_slow")
        self.outages = Outages(a("outage_alert_ttl"), int(a("minor_outage_alert_threshold")),
                               int(a("major_outage_alert_threshold")), int(a("max_outage_alert_list_size")))
        self.outage_alerts = on("outage_alerts")
        self.rates: SpendRates | None = None
        if on("spend_anomaly"):
            self.rates = SpendRates(a("anomaly_window"), a("anomaly_horizon"), a("anomaly_factor"),
                                    a("anomaly_min_spend"), int(a("anomaly_min_windows")),
                                    int(a("anomaly_max_subjects")))
        # request id -> request, only with llm_requests_hanging (registered by a pre_request hook)
        self.in_flight: dict[str, RequestContext] | None = {} if on("llm_requests_hanging") else None
        self._tasks: list[asyncio.Task[Any]] = []
        self._cooldowns: dict[str, float] = {}
        self._spend_failures = 0
        self._db_failures = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.delivery.start()
        on = self.settings.enabled
        if self.in_flight is not None:
            self.gw.hooks.pre_request.append(self._register)
            interval = self.settings.arg("hanging_check_interval") or min(self.threshold / 2, 30.0)
            self._tasks.append(loop.create_task(self._every(interval, self.check_hanging), name="lockgate-alerts-hang"))
        if on("cooldown_deployment") or on("failed_tracking_spend") or on("db_exceptions"):
            self._spend_failures, self._db_failures = self._failure_counts()
            self._tasks.append(loop.create_task(self._every(self.settings.arg("cooldown_check_interval"),
                                                            self.watch), name="lockgate-alerts-watch"))
        if on("daily_reports") or on("spend_reports"):
            self._tasks.append(loop.create_task(self._reports(), name="lockgate-alerts-reports"))
        if not self.senders:
            log.warning("alerting is on but no channel has a receiver (SLACK_WEBHOOK_URL, WEBHOOK_URL, SMTP_HOST)")

    async def close(self) -> None:
        await background.stop(self._tasks)
        if self._register in self.gw.hooks.pre_request:
            self.gw.hooks.pre_request.remove(self._register)
        await self.delivery.close()

    # ------------------------------------------------------------------ raising

    def emit(self, alert: Alert) -> bool:
        """Queue ``alert`` unless its key was sent from this process within its TTL."""
        if not self.senders:
            return False
        if not self.dedupe.first_here(alert.key, alert.ttl):
            return False
        return self.delivery.put(alert)

    async def _claim(self, alert: Alert) -> bool:
        return await self.dedupe.first_everywhere(alert.key, alert.ttl)

    async def _enrich(self, alert: Alert) -> None:
        """Budget payloads: team alias and user email looked up in storage (off the request path)."""
        payload = alert.payload
        store = self.gw.store
        if payload is None or store is None:
            return
        try:
            if payload.get("team_id") and payload.get("team_alias") is None:
                team = await store.get("team", payload["team_id"])
                payload["team_alias"] = team.get("team_alias") if team else None
            if payload.get("user_id") and payload.get("user_email") is None:
                user = await store.get("user", payload["user_id"])
                payload["user_email"] = user.get("user_email") if user else None
        except Exception as exc:  # noqa: BLE001 - the alert goes without the names
            log.warning("alert %s: could not look up names (%s)", alert.type, type(exc).__name__)

    # ------------------------------------------------------------------ per request

    async def _register(self, gw: Gateway, ctx: RequestContext) -> None:
        if self.in_flight is not None:
            self.in_flight[ctx.request_id] = ctx

    def observe(self, ctx: RequestContext, error: LockgateError | None) -> None:
        """After a request (accounting stage): budgets, anomaly, exceptions, outages, slowness."""
        if self.in_flight is not None:
            self.in_flight.pop(ctx.request_id, None)
        grant = ctx.grant
        if grant is not None:
            if self.budgets and (grant.cost or isinstance(error, BudgetExceeded)):
                self._budgets(ctx, grant.cost)
            if self.rates is not None and grant.cost > 0:
                self._anomaly(ctx, grant.cost)
        dep = ctx.deployment
        if dep is None:
            return
        failed = isinstance(error, PROVIDER_FAILURES) or (
            error is None and ctx.error_kind is not None and ctx.error_kind not in CLIENT_KINDS)
        if failed:
            if self.exceptions:
                self._exception(ctx, error)
            if self.outage_alerts:
                level = self.outages.add(dep.id, monotonic())
                if level is not None:
                    self._outage(ctx, level)
            return
        if self.slow and ctx.status == 200:
            seconds = perf_counter() - ctx.started
            if seconds > self.threshold:
                self.emit(Alert(
                    type="llm_too_slow", title=f"LLM request slower than {self.threshold:g} s: model {ctx.model}",
                    key=f"llm_too_slow:{dep.id}", ttl=self.request_ttl, level="Low",
                    details={"Model group": ctx.model_group or ctx.model, "Deployment": dep.id,
                             "Provider": dep.provider, "Latency (s)": round(seconds, 3),
                             "Threshold (s)": self.threshold, "Request id": ctx.request_id}))

    def _budgets(self, ctx: RequestContext, cost: float) -> None:
        p = ctx.principal
        subjects: list[budgets.Subject] = []
        if isinstance(p, Principal):
            cached = self._subjects.get(p.key.token_hash)
            if cached is None or cached[0] is not p:  # a new snapshot of the key (cache refresh, change)
                if len(self._subjects) >= SUBJECT_CACHE:
                    self._subjects.clear()
                cached = self._subjects[p.key.token_hash] = (p, budgets.subjects_of(p))
            subjects = cached[1]
        gov = self.gw.governance
        end_user = ctx.body.get("user")
        if gov is not None and isinstance(end_user, str) and end_user:
            ent = gov.customers.peek(end_user)
            if ent is not None and budgets.has_budget(ent.limits):
                subjects = [*subjects, budgets.Subject("customer", end_user, ent.limits, end_user)]
        if gov is not None and gov.proxy is not None and budgets.has_budget(gov.proxy):
            subjects = [*subjects, budgets.Subject("proxy", "proxy", gov.proxy, "proxy")]
        if not subjects:
            return
        counted = budgets.counter_values(ctx)
        now = time()
        for subject in subjects:
            for alert in budgets.check(ctx, subject, counted.get((subject.group, subject.id)), cost,
                                       self.projection_min, self.budget_ttl, now):
                self.emit(alert)

    def _anomaly(self, ctx: RequestContext, cost: float) -> None:
        p = ctx.principal
        if not isinstance(p, Principal) or self.rates is None:
            return
        now = time()
        key = p.key
        hit = self.rates.add("k:" + key.token_hash, cost, now)
        if hit is not None:
            self._anomaly_alert("key", key.token_hash, key_label(key.token_hash, key.key_alias), hit)
        if key.team_id:
            hit = self.rates.add("t:" + key.team_id, cost, now)
            if hit is not None:
                self._anomaly_alert("team", key.team_id, key.team_id, hit)

    def _anomaly_alert(self, group: str, ident: str, label: str, hit: tuple[int, float, float]) -> None:
        assert self.rates is not None
        slot, spent, baseline = hit
        window = self.rates.window
        self.emit(Alert(
            type="spend_anomaly", title=f"Spend anomaly: {group} {label}",
            key=f"spend_anomaly:{group}:{ident}:{slot}", ttl=window * 2, level="High",
            details={"Subject": f"{group} {label}", "Spend in this window (USD)": spent,
                     "Window (s)": window, "Baseline per window (USD)": baseline,
                     "Rule": f"> max({self.rates.factor:g} x baseline, {self.rates.floor:g})"}))

    def _exception(self, ctx: RequestContext, error: LockgateError | None) -> None:
        dep = ctx.deployment
        assert dep is not None
        kind = error.kind if error is not None else (ctx.error_kind or "stream")
        message = error.message[:MESSAGE_LIMIT] if error is not None else "the stream failed after it started"
        self.emit(Alert(
            type="llm_exceptions", title=f"LLM API exception: model {ctx.model}",
            key=f"llm_exceptions:{dep.id}:{kind}", ttl=self.request_ttl, level="High",
            details={"Model group": ctx.model_group or ctx.model, "Deployment": dep.id, "Provider": dep.provider,
                     "Error": kind, "Status": error.status if error is not None else ctx.status,
                     "Message": message, "Retries": ctx.retries, "Request id": ctx.request_id}))

    def _outage(self, ctx: RequestContext, level: str) -> None:
        dep = ctx.deployment
        assert dep is not None
        window = self.outages.window
        self.emit(Alert(
            type="outage_alerts", title=f"{level.capitalize()} outage: deployment {dep.id} ({dep.provider}/{dep.model})",
            key=f"outage_alerts:{level}:{dep.id}:{int(time() // window)}", ttl=window, level="High" if level == "major"
            else "Medium",
            details={"Deployment": dep.id, "Model group": dep.model_name, "Provider": dep.provider,
                     f"Failures in the last {window:g} s": self.outages.count(dep.id)}))

    # ------------------------------------------------------------------ background checks

    async def _every(self, interval: float, check: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next tick tries again
                log.warning("alert check %s failed (%s)", getattr(check, "__name__", "?"), type(exc).__name__)

    async def check_hanging(self) -> None:
        if not self.in_flight:
            return
        now = perf_counter()
        for ctx in list(self.in_flight.values()):
            age = now - ctx.started
            if ctx.status == 0 and age > self.threshold:
                group = ctx.model_group or ctx.model
                dep = ctx.deployment
                self.emit(Alert(
                    type="llm_requests_hanging", title=f"LLM request hanging for {age:.0f} s: model {ctx.model}",
                    key=f"llm_requests_hanging:{group}", ttl=self.request_ttl, level="Medium",
                    details={"Model group": group, "Deployment": dep.id if dep else None,
                             "Provider": dep.provider if dep else None, "Waiting (s)": round(age, 1),
                             "Threshold (s)": self.threshold, "Request id": ctx.request_id}))

    def _failure_counts(self) -> tuple[int, int]:
        gov = self.gw.governance
        if gov is None:
            return 0, 0
        spend = (getattr(gov.writer, "failures", 0) or 0) + (getattr(gov.spend_stream, "failures", 0) or 0)
        return spend, spend + getattr(gov, "reset_failures", 0)

    async def watch(self) -> None:
        on = self.settings.enabled
        if on("cooldown_deployment"):
            self._watch_cooldowns()
        spend, db = self._failure_counts()
        if spend > self._spend_failures and on("failed_tracking_spend"):
            self.emit(Alert(
                type="failed_tracking_spend", title="Spend tracking failed: spend records could not be written",
                key="failed_tracking_spend", ttl=self.request_ttl, level="High",
                details={"New failures": spend - self._spend_failures,
                         "Note": "records stay in the journal / Redis stream and are retried"}))
        if db > self._db_failures and on("db_exceptions"):
            self.emit(Alert(
                type="db_exceptions", title="Database error: a write or read failed", key="db_exceptions",
                ttl=self.request_ttl, level="High", details={"New failures": db - self._db_failures}))
        self._spend_failures, self._db_failures = spend, db

    def _watch_cooldowns(self) -> None:
        now = time()
        deployments = {d.id: d for d in self.gw.settings.deployments}
        for dep_id, stats in self.gw.router.stats.items():
            until = stats.cooldown_until
            if until <= now or until <= self._cooldowns.get(dep_id, 0.0):
                continue
            self._cooldowns[dep_id] = until
            dep = deployments.get(dep_id)
            self.emit(Alert(
                type="cooldown_deployment", title=f"Deployment cooled down: {dep_id}",
                key=f"cooldown_deployment:{dep_id}:{int(until)}", ttl=until - now + 60, level="Medium",
                details={"Deployment": dep_id, "Model group": dep.model_name if dep else None,
                         "Provider": f"{dep.provider}/{dep.model}" if dep else None,
                         "Cooling down for (s)": round(until - now, 1)}))

    async def _reports(self) -> None:
        on = self.settings.enabled
        daily = self.settings.arg("daily_report_frequency")
        spend = self.settings.spend_report_frequency
        last_daily, last_spend = int(time() // daily), int(time() // spend)
        while True:
            await asyncio.sleep(self.settings.arg("report_check_interval"))
            now = time()
            try:
                if on("daily_reports") and int(now // daily) != last_daily:
                    last_daily = int(now // daily)
                    failures, self.outages.failures = self.outages.failures, {}
                    self.emit(await reports.daily_report(self.gw, last_daily, daily, failures))
                if on("spend_reports") and int(now // spend) != last_spend:
                    last_spend = int(now // spend)
                    self.emit(await reports.spend_report(self.gw, last_spend, spend))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a report the database could not build
                log.warning("alert report failed (%s)", type(exc).__name__)
                if on("db_exceptions"):
                    self.emit(Alert(type="db_exceptions", title="Database error: a report could not be built",
                                    key="db_exceptions:report", ttl=self.request_ttl, level="High",
                                    details={"Error": type(exc).__name__}))

    # ------------------------------------------------------------------ /health/services

    async def send_test(self, channel: str) -> dict[str, Any]:
        """One test alert through ``channel``, now (no queue, no dedupe, one attempt)."""
        sender = self.senders[channel]
        alert = test_alert()
        try:
            await sender.send(alert)
        except channels.DeliveryError as exc:
            self.metrics.failed.labels(channel, "test").inc()
            return {"status": "failure", "service": channel, "message": str(exc)}
        self.metrics.sent.labels(channel, "test").inc()
        return {"status": "success", "service": channel, "message": f"test alert sent through {channel}"}


def test_alert() -> Alert:
    message = "Test alert from Lockgate (GET /health/services): no budget was crossed"
    payload = {"spend": 0.0, "max_budget": 0.0, "soft_budget": None, "token": None, "customer_id": None,
               "user_id": None, "team_id": None, "team_alias": None, "organization_id": None, "user_email": None,
               "key_alias": None, "projected_exceeded_date": None, "projected_spend": None,
               "event": "budget_crossed", "event_group": "proxy", "event_message": message}
    return Alert(type="test", title=message, key="test", ttl=1, details={"Sent at": time()}, payload=payload)
