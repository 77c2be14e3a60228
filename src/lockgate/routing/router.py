"""The router: model name -> model group -> ordered fallbacks -> one deployment.

Configured by LiteLLM's ``router_settings`` (routing_strategy, model_group_alias,
num_retries, retry_policy, retry_after, allowed_fails, cooldown_time,
disable_cooldowns, fallbacks, context_window_fallbacks, content_policy_fallbacks,
default_fallbacks) and Lockgate's ``lockgate_settings.routing_rules``.
"""

from __future__ import annotations

import fnmatch
import math
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import NotFound, RateLimited
from .retry import IMMEDIATE_COOLDOWN_STATUS, RetryPolicy
from .rules import RoutingRule
from .stats import StatsTable
from .strategies import STRATEGIES

if TYPE_CHECKING:
    from ..config import Deployment, Settings
    from ..context import RequestContext
    from ..errors import LockgateError
    from .shared import SharedStats

COOLDOWN_KINDS = {"rate_limit", "timeout", "server", "auth"}


class NoDeploymentLeft(Exception):
    """Every deployment of the group was tried in this request."""


class Router:
    def __init__(self, settings: Settings) -> None:
        rs = settings.router_settings
        self.strategy_name = rs.get("routing_strategy") or "simple-shuffle"
        self.strategy = STRATEGIES[self.strategy_name]
        self.groups: dict[str, list[Deployment]] = settings.groups()
        self.wildcards = [(name, deps) for name, deps in self.groups.items() if "*" in name]
        self.aliases = {k: (v["model"] if isinstance(v, dict) else v) for k, v in
                        (rs.get("model_group_alias") or {}).items()}
        self.rules = [RoutingRule.parse(r) for r in settings.routing_rules]
        self.fallbacks = _fallback_map(rs.get("fallbacks"))
        self.context_window_fallbacks = _fallback_map(rs.get("context_window_fallbacks"))
        self.content_policy_fallbacks = _fallback_map(rs.get("content_policy_fallbacks"))
        self.default_fallbacks = list(rs.get("default_fallbacks") or [])
        self.allowed_fails = int(rs.get("allowed_fails", 3))
        self.cooldown_time = float(rs.get("cooldown_time", 5))
        self.cooldowns = not rs.get("disable_cooldowns", False) and self.cooldown_time > 0
        self.retry = RetryPolicy.from_settings(rs)
        self.stats = StatsTable()
        self.rng = random.Random()
        self.shared: SharedStats | None = None  # shared.SharedStats when Redis is configured
        self._derived: dict[str, list[Deployment]] = {}
        self._context_limits: dict[str, tuple[list[Deployment], int | None]] = {}

    # ------------------------------------------------------------ names

    def resolve(self, ctx: RequestContext) -> str:
        """The model group for this request: conditional rules, then aliases."""
        name = ctx.model
        for rule in self.rules:
            if rule.matches(ctx):
                name = rule.model
                break
        return self.aliases.get(name, name)

    def deployments(self, group: str) -> list[Deployment]:
        found = self.groups.get(group) or self._derived.get(group)
        if found:
            return found
        for pattern, deps in self.wildcards:
            if fnmatch.fnmatchcase(group, pattern):
                suffix = _wildcard_part(pattern, group)
                derived = [replace(d, model=d.model.replace("*", suffix), model_name=group) for d in deps]
                if len(self._derived) < 10_000:
                    self._derived[group] = derived
                return derived
        raise NotFound(f"model {group!r} is not served by this gateway; GET /v1/models lists the models")

    def context_limit(self, group: str) -> int | None:
        """The largest ``max_input_tokens`` of the group's deployments; None when one of them sets none."""
        deps = self.deployments(group)
        cached = self._context_limits.get(group)
        if cached is not None and cached[0] is deps:
            return cached[1]
        limits = [d.model_info.get("max_input_tokens") for d in deps]
        limit = None if not limits or None in limits else max(int(v) for v in limits if v is not None)
        if len(self._context_limits) < 10_000:  # bounded, like the wildcard groups above
            self._context_limits[group] = (deps, limit)
        return limit

    def fallback_groups(self, group: str, kind: str | None, requested: list[str] | None) -> list[str]:
        """Groups to try after ``group`` for a failure of ``kind`` (None: proactive context check)."""
        if kind == "context_window" and group in self.context_window_fallbacks:
            return self.context_window_fallbacks[group]
        if kind == "content_policy" and group in self.content_policy_fallbacks:
            return self.content_policy_fallbacks[group]
        if requested:
            return list(requested)
        return self.fallbacks.get(group) or self.default_fallbacks

    # ------------------------------------------------------------ choosing

    def pick(self, group: str, tried: set[str]) -> Deployment:
        deps = self.deployments(group)
        now = time.time()
        available = [d for d in deps if d.id not in tried and self._usable(d, now)]
        if not available:
            untried = [d for d in deps if d.id not in tried]
            if not untried:
                raise NoDeploymentLeft(group)
            recover = min(self.stats[d.id].cooldown_until for d in untried)
            wait = max(1, math.ceil(recover - now))
            raise RateLimited(f"every deployment of {group!r} is cooling down; retry in {wait} s",
                              headers={"Retry-After": str(wait)}, code="all_deployments_cooling_down")
        if len(available) == 1:
            return available[0]
        tier = min(_order(d) for d in available)
        candidates = [d for d in available if _order(d) == tier]
        return candidates[0] if len(candidates) == 1 else self.strategy(candidates, self.stats, self.rng)

    def _usable(self, dep: Deployment, now: float) -> bool:
        stats = self.stats[dep.id]
        return not stats.unhealthy and not stats.cooling(now)

    # ------------------------------------------------------------ outcomes

    def started(self, dep: Deployment) -> None:
        self.stats[dep.id].in_flight += 1

    def finished(self, dep: Deployment, seconds: float, ttft: float | None, tokens: int) -> None:
        stats = self.stats[dep.id]
        stats.in_flight -= 1
        stats.requests += 1
        stats.observe_latency(seconds, ttft)
        stats.count_usage(tokens)

    def failed(self, dep: Deployment, err: LockgateError, kind: str) -> None:
        stats = self.stats[dep.id]
        stats.in_flight -= 1
        if not self.cooldowns or (kind not in COOLDOWN_KINDS and err.status not in IMMEDIATE_COOLDOWN_STATUS):
            return
        stats.failures.append(time.monotonic())
        if err.status in IMMEDIATE_COOLDOWN_STATUS or stats.recent_failures(time.monotonic()) >= self.allowed_fails:
            self.cool_down(dep.id, time.time() + self.cooldown_time)

    def cool_down(self, deployment_id: str, until: float, share: bool = True) -> None:
        stats = self.stats[deployment_id]
        if until > stats.cooldown_until:
            stats.cooldown_until = until
            stats.failures.clear()
            if share and self.shared is not None:
                self.shared.publish_cooldown(deployment_id, until)

    def cooling_down(self, deployment_id: str) -> bool:
        return self.stats[deployment_id].cooling(time.time())


def _order(dep: Deployment) -> int:
    return dep.order if dep.order is not None else 1_000_000


def _wildcard_part(pattern: str, name: str) -> str:
    prefix = pattern.split("*", 1)[0]
    return name[len(prefix):] if name.startswith(prefix) else name


def _fallback_map(raw: Any) -> dict[str, list[str]]:
    """LiteLLM writes fallbacks as a list of one-key mappings: [{"a": ["b", "c"]}]."""
    out: dict[str, list[str]] = {}
    items = raw.items() if isinstance(raw, dict) else [kv for d in raw or [] for kv in d.items()]
    for group, targets in items:
        out[group] = [targets] if isinstance(targets, str) else list(targets)
    return out
