"""Gauges read at scrape time from the gateway's state: nothing here runs per request.

``scrape(gw)`` answers ``GET /metrics``: on the first scrape it registers ``StateCollector``; before each
render it refreshes what is not in this process (the rate windows and running spend in Redis: one MGET of
the series it will show), then renders.

- deployments: ``lockgate_deployment_state`` (0 healthy, 1 cooling down, 2 health checks failing);
- the spend writer: ``lockgate_spend_queue_depth`` (records journaled, not yet in the database),
  ``lockgate_spend_journal_lag_bytes``, ``lockgate_spend_records_applied_total``,
  ``lockgate_spend_write_failures_total``;
- limits of the keys (and their teams, users, organizations) in the key cache, that is keys used in the
  last few seconds to minutes: ``lockgate_budget_remaining_usd`` / ``lockgate_budget_max_usd`` and
  ``lockgate_rate_limit_remaining`` / ``lockgate_rate_limit`` (rpm, tpm, parallel), labelled
  ``entity`` (key, team, user, organization), ``name`` (a key's alias or hash prefix, an entity's id)
  and ``model`` (a key's per-model limits; empty otherwise).  At most ``max_series`` series per family;
  the rest are counted in ``lockgate_metrics_series_dropped``.  With LiteLLM names on, LiteLLM's
  remaining-budget and remaining-limit gauges are copies of these.

The keys' running spend and rate windows come from the counters: in process, read directly; in Redis,
one MGET per scrape.  Workers of ``serve --workers N`` without Redis keep them in the counters service,
which has no read request: there the budgets show the spend stored when the key was last loaded (at
most ``key_cache_ttl`` old) and rate windows are not shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .options import MetricsOptions, key_name

if TYPE_CHECKING:
    from ..gateway import Gateway

log = logging.getLogger("lockgate.metrics")

WINDOW = 60  # the counters' fixed windows (state.counters.WINDOW)
ENTITY_OF = {"k": "key", "t": "team", "u": "user", "o": "organization"}
KEY_LIMITS = ("hashed_api_key", "api_key_alias", "model")


@dataclass(frozen=True, slots=True)
class Series:
    """One limit of one entity, as the counters name it."""

    counter: str  # the counter's name (state.counters.Item.key)
    kind: str  # "b" budget, "w" window, "p" parallel
    limit: float
    initial: float  # a budget's spend when the key was loaded (the counter starts from it)
    entity: str  # key, team, user, organization
    name: str  # label: a key's alias or hash prefix, an entity's id
    key_hash: str  # keys: the hash prefix (LiteLLM's hashed_api_key); else ""
    alias: str  # keys: the alias, or ""
    model: str  # a key's per-model limit: the model; else ""
    what: str  # windows: rpm, tpm or parallel; budgets: ""


def series_of(gw: Gateway, options: MetricsOptions) -> list[Series]:
    """Every limit of the cached keys' plans, once each (``governance.enforcement._principal_plan``)."""
    gov = gw.governance
    if gov is None or not options.entities:
        return []
    out: dict[str, Series] = {}
    for entry in list(getattr(gov.keys, "_entries", {}).values()):
        principal = entry[1]
        if principal is None:
            continue
        key = principal.key
        label = key_name(options, key.key_alias, key.token_hash)
        for plan in list(principal.plans.values()):
            for item in plan[0]:
                if item.key not in out:
                    found = _series(item, options, label, key.token_hash[:12], key.key_alias or "")
                    if found is not None:
                        out[item.key] = found
    return list(out.values())


def _series(item: Any, options: MetricsOptions, key_label: str, key_hash: str, alias: str) -> Series | None:
    prefix, _, rest = item.key.partition(":")
    entity = ENTITY_OF.get(prefix)
    if entity is None or entity not in options.entities:
        return None
    ident, _, rest = rest.partition(":")
    model = ""
    if rest.startswith("m:"):  # a key's per-model limit: m:<model>:rpm | :tpm | :spend:<period>
        body = rest[2:]
        cut = body.rfind(":spend:")
        if cut < 0:
            cut = body.rfind(":")
        model, rest = body[:cut], body[cut + 1:]
    what = "" if rest.startswith("spend") else {"rpm": "rpm", "tpm": "tpm", "par": "parallel"}.get(rest)
    if what is None:
        return None
    if entity == "key":
        return Series(item.key, item.kind, float(item.limit), float(item.amount), entity, key_label, key_hash,
                      alias, model, what)
    return Series(item.key, item.kind, float(item.limit), float(item.amount), entity, ident, "", "", model, what)


class StateCollector:
    """The scrape-time gauges above; ``refresh`` (async) reads what lives in Redis first."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.options: MetricsOptions = gw.settings.metrics
        self.litellm_names = gw.metrics.litellm_names
        self.series: list[Series] = []
        self.values: dict[str, float] = {}  # counter name -> current value (windows: this minute's)
        self.windows_known = False  # False: the counters live where this process cannot read them
        self.stream_length: int | None = None  # shared spend: entries in the Redis stream (not yet applied)
        self.dropped = 0  # series past max_series at the last refresh
        self.slots_known = False  # parallel slots: read in process only

    async def refresh(self) -> None:
        gov = self.gw.governance
        self.windows_known = gov is not None and _readable(gov.counters)
        self.slots_known = gov is not None and _in_process(gov.counters)  # Redis' slot sets are not read
        series = self._shown(series_of(self.gw, self.options))
        self.series = series
        self.values = {}
        if gov is not None and gov.spend_stream is not None:
            try:
                self.stream_length = int(await gov.spend_stream.client.xlen(gov.spend_stream.key))
            except Exception as exc:  # noqa: BLE001 - the scrape answers without it
                log.warning("metrics: could not read the spend stream's length (%s)", type(exc).__name__)
                self.stream_length = None
        if gov is None or not series:
            return
        from ..state.counters import LocalCounters, RedisCounters

        counters = gov.counters
        window = int(time.time() // WINDOW)
        if isinstance(counters, LocalCounters):
            windows, spend, slots = counters._windows, counters._spend, counters._slots
            for s in series:
                if s.kind == "w":
                    w = windows.get(s.counter)
                    self.values[s.counter] = w[1] if w is not None and w[0] == window else 0.0
                elif s.kind == "p":
                    self.values[s.counter] = float(len(slots.get(s.counter) or ()))
                elif s.counter in spend:
                    self.values[s.counter] = spend[s.counter]
        elif isinstance(counters, RedisCounters):
            names = [counters.prefix + s.counter + (f":{window}" if s.kind == "w" else "")
                     for s in series if s.kind != "p"]
            try:
                got = await counters.client.mget(names) if names else []
            except Exception as exc:  # noqa: BLE001 - the scrape answers without them
                log.warning("metrics: could not read the counters from Redis (%s)", type(exc).__name__)
                self.windows_known = False
                return
            rows = [s for s in series if s.kind != "p"]
            for s, raw in zip(rows, got, strict=True):
                if raw is not None:
                    self.values[s.counter] = float(raw)
                elif s.kind == "w":
                    self.values[s.counter] = 0.0

    def _shown(self, series: list[Series]) -> list[Series]:
        """The series this scrape shows: one per label set, at most ``max_series`` budgets and as many rate
        limits (only where the counters are readable); the rest counted in ``self.dropped``."""
        cap = self.options.max_series
        budgets = windows = dropped = 0
        seen: set[tuple[str, str, str, str]] = set()
        shown: list[Series] = []
        for s in series:
            labels_of = (s.entity, s.name, s.model, s.what)
            if labels_of in seen:  # two keys with one alias, or two budget periods: the first is shown
                continue
            if (s.kind == "w" and not self.windows_known) or (s.kind == "p" and not self.slots_known):
                continue
            seen.add(labels_of)
            if s.kind == "b":
                if budgets >= cap:
                    dropped += 1
                    continue
                budgets += 1
            else:
                if windows >= cap:
                    dropped += 1
                    continue
                windows += 1
            shown.append(s)
        self.dropped = dropped
        return shown

    def collect(self) -> Iterator[Metric]:
        yield self._deployment_state()
        yield from self._spend_writer()
        yield from self._limits()

    def _deployment_state(self) -> Metric:
        gauge = GaugeMetricFamily("lockgate_deployment_state",
                                  "0 healthy, 1 cooling down (partial outage), 2 health checks fail (outage)",
                                  labels=["deployment"])
        now = time.time()
        router = self.gw.router
        seen: set[str] = set()
        for deps in router.groups.values():
            for dep in deps:
                if dep.id in seen:
                    continue
                seen.add(dep.id)
                stats = router.stats[dep.id]
                gauge.add_metric([dep.id], 2.0 if stats.unhealthy else 1.0 if stats.cooling(now) else 0.0)
        return gauge

    def _spend_writer(self) -> Iterator[Metric]:
        gov = self.gw.governance
        writer = gov.writer if gov is not None else None
        if gov is None or writer is None:
            return
        journal = writer.journal
        depth = GaugeMetricFamily("lockgate_spend_queue_depth", "Spend records not yet written to the database: "
                                  "this instance's journal, or the shared Redis stream", labels=["path"])
        applied = CounterMetricFamily("lockgate_spend_records_applied", "Spend records written to the database",
                                      labels=["path"])
        failures = CounterMetricFamily("lockgate_spend_write_failures", "Failed spend writes (retried)",
                                       labels=["path"])
        depth.add_metric(["journal"], float(writer._pending_count))
        applied.add_metric(["journal"], float(writer.applied_total))
        failures.add_metric(["journal"], float(writer.failures))
        stream = gov.spend_stream
        if stream is not None:
            if self.stream_length is not None:
                depth.add_metric(["stream"], float(self.stream_length))
            applied.add_metric(["stream"], float(stream.applied_total))
            failures.add_metric(["stream"], float(stream.failures))
        yield depth
        yield _gauge("lockgate_spend_journal_lag_bytes", "Journal bytes past the writer's checkpoint",
                     float(max(0, journal.size - journal.applied)))
        yield applied
        yield failures

    def _limits(self) -> Iterator[Metric]:
        labels = ["entity", "name", "model"]
        remaining = GaugeMetricFamily("lockgate_budget_remaining_usd", "Budget left (max_budget - spend)", labels=labels)
        maximum = GaugeMetricFamily("lockgate_budget_max_usd", "max_budget", labels=labels)
        left = GaugeMetricFamily("lockgate_rate_limit_remaining", "Requests / tokens left in this minute's window, "
                                 "or parallel slots free", labels=[*labels, "limit"])
        limit = GaugeMetricFamily("lockgate_rate_limit", "The rate limit (rpm, tpm, parallel)", labels=[*labels, "limit"])
        for s in self.series:
            if s.kind == "b":
                spend = self.values.get(s.counter, s.initial)
                remaining.add_metric([s.entity, s.name, s.model], s.limit - spend)
                maximum.add_metric([s.entity, s.name, s.model], s.limit)
            elif self.windows_known:  # False when Redis did not answer this scrape
                left.add_metric([s.entity, s.name, s.model, s.what], max(0.0, s.limit - self.values.get(s.counter, 0.0)))
                limit.add_metric([s.entity, s.name, s.model, s.what], s.limit)
        yield from (remaining, maximum, left, limit)
        yield _gauge("lockgate_metrics_series_dropped", "Limit series left out of this scrape (past max_series)",
                     float(self.dropped))
        if self.litellm_names:
            yield from self._litellm(remaining, maximum, left)

    def _litellm(self, remaining: Metric, maximum: Metric, left: Metric) -> Iterator[Metric]:
        """LiteLLM's names for the same numbers (its label sets; what Lockgate does not track left empty)."""
        by_counter: dict[tuple[str, str, str, str], Series] = {}
        for s in self.series:
            by_counter.setdefault((s.entity, s.name, s.model, s.what), s)
        key_budget = GaugeMetricFamily("litellm_remaining_api_key_budget_metric", "Remaining budget of a key "
                                       "(Lockgate: lockgate_budget_remaining_usd)", labels=["hashed_api_key", "api_key_alias"])
        key_max = GaugeMetricFamily("litellm_api_key_max_budget_metric", "max_budget of a key "
                                    "(Lockgate: lockgate_budget_max_usd)", labels=["hashed_api_key", "api_key_alias"])
        team_budget = GaugeMetricFamily("litellm_remaining_team_budget_metric", "Remaining budget of a team "
                                        "(Lockgate: lockgate_budget_remaining_usd)", labels=["team", "team_alias"])
        team_max = GaugeMetricFamily("litellm_team_max_budget_metric", "max_budget of a team "
                                     "(Lockgate: lockgate_budget_max_usd)", labels=["team", "team_alias"])
        requests = GaugeMetricFamily("litellm_remaining_api_key_requests_for_model", "Requests a key has left this "
                                     "minute (Lockgate: lockgate_rate_limit_remaining)", labels=list(KEY_LIMITS))
        tokens = GaugeMetricFamily("litellm_remaining_api_key_tokens_for_model", "Tokens a key has left this "
                                   "minute (Lockgate: lockgate_rate_limit_remaining)", labels=list(KEY_LIMITS))
        for family, key_family, team_family in ((remaining, key_budget, team_budget), (maximum, key_max, team_max)):
            for sample in family.samples:
                lab = sample.labels
                if lab["model"]:
                    continue
                if lab["entity"] == "key":
                    s = by_counter[("key", lab["name"], "", "")]
                    key_family.add_metric([s.key_hash, s.alias], sample.value)
                elif lab["entity"] == "team":
                    team_family.add_metric([lab["name"], ""], sample.value)
        for sample in left.samples:
            lab = sample.labels
            if lab["entity"] != "key" or lab["limit"] not in ("rpm", "tpm"):
                continue
            s = by_counter[("key", lab["name"], lab["model"], lab["limit"])]
            (requests if lab["limit"] == "rpm" else tokens).add_metric([s.key_hash, s.alias, s.model], sample.value)
        yield from (key_budget, key_max, team_budget, team_max, requests, tokens)


def _readable(counters: Any) -> bool:
    """Whether this process can read the counters' rate windows (in process, or Redis)."""
    from ..state.counters import LocalCounters, RedisCounters

    return isinstance(counters, LocalCounters | RedisCounters)


def _in_process(counters: Any) -> bool:
    from ..state.counters import LocalCounters

    return isinstance(counters, LocalCounters)


def _gauge(name: str, doc: str, value: float) -> Metric:
    gauge = GaugeMetricFamily(name, doc)
    gauge.add_metric([], value)
    return gauge


async def scrape(gw: Gateway) -> bytes:
    """The ``GET /metrics`` body: the state collector registered once, refreshed, then everything rendered."""
    metrics = gw.metrics
    collector = metrics.state
    if collector is None:
        collector = metrics.state = StateCollector(gw)
        metrics.watch(collector)
    await collector.refresh()
    return metrics.render()
