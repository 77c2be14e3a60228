"""Per-deployment health: in flight, latency, recent failures, cooldowns, health checks.

Kept in process, read on the hot path without I/O.  When Redis is configured
``shared.SharedStats`` publishes cooldowns and latency so that every instance
sees the same state (see shared.py).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

EWMA_ALPHA = 0.2
FAILURE_WINDOW = 60.0


@dataclass
class DeploymentStats:
    in_flight: int = 0
    latency: float | None = None  # seconds, moving average of whole requests (all instances)
    ttft: float | None = None  # seconds, moving average of time to first token (streams)
    own_latency: float | None = None  # this instance's own averages, shared through Redis
    own_ttft: float | None = None
    failures: deque = field(default_factory=deque)  # monotonic times of recent failures
    cooldown_until: float = 0.0  # wall-clock time (time.time()) so instances can share it
    unhealthy: bool = False  # set by background health checks
    requests: int = 0
    minute: int = 0  # the minute the rpm/tpm counts below belong to
    minute_requests: int = 0
    minute_tokens: int = 0

    def cooling(self, now: float) -> bool:
        return self.cooldown_until > now

    def observe_latency(self, seconds: float, ttft: float | None) -> None:
        self.latency = _ewma(self.latency, seconds)
        self.own_latency = _ewma(self.own_latency, seconds)
        if ttft is not None:
            self.ttft = _ewma(self.ttft, ttft)
            self.own_ttft = _ewma(self.own_ttft, ttft)

    def count_usage(self, tokens: int) -> None:
        minute = int(time.time() // 60)
        if minute != self.minute:
            self.minute, self.minute_requests, self.minute_tokens = minute, 0, 0
        self.minute_requests += 1
        self.minute_tokens += tokens

    def usage_this_minute(self) -> tuple[int, int]:
        if int(time.time() // 60) != self.minute:
            return 0, 0
        return self.minute_requests, self.minute_tokens

    def recent_failures(self, now_monotonic: float) -> int:
        while self.failures and self.failures[0] < now_monotonic - FAILURE_WINDOW:
            self.failures.popleft()
        return len(self.failures)


def _ewma(current: float | None, sample: float) -> float:
    return sample if current is None else current + EWMA_ALPHA * (sample - current)


class StatsTable:
    """Deployment id -> DeploymentStats, created on first use."""

    def __init__(self) -> None:
        self._stats: dict[str, DeploymentStats] = {}

    def __getitem__(self, deployment_id: str) -> DeploymentStats:
        stats = self._stats.get(deployment_id)
        if stats is None:
            stats = self._stats[deployment_id] = DeploymentStats()
        return stats

    def items(self):
        return self._stats.items()


class CooldownCollector:
    """Prometheus gauge ``lockgate_deployment_cooldown`` (1 while cooling down), read at scrape time."""

    def __init__(self, table: StatsTable) -> None:
        self.table = table

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily("lockgate_deployment_cooldown", "1 while a deployment is cooling down",
                                  labels=["deployment"])
        unhealthy = GaugeMetricFamily("lockgate_deployment_unhealthy", "1 while health checks fail",
                                      labels=["deployment"])
        now = time.time()
        for dep_id, stats in self.table.items():
            gauge.add_metric([dep_id], 1.0 if stats.cooling(now) else 0.0)
            unhealthy.add_metric([dep_id], 1.0 if stats.unhealthy else 0.0)
        yield gauge
        yield unhealthy
