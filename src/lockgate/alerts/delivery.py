"""The delivery queue: bounded, drained by worker tasks off the request path, each alert sent to every
channel with retries and exponential back-off.  A full queue drops the alert; drops, retries, failures
and successes are counted in Prometheus (``lockgate_alerts_*``)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter

from .. import background
from .channels import DeliveryError

if TYPE_CHECKING:
    from .channels import Sender
    from .model import Alert

log = logging.getLogger("lockgate.alerts")
WORKERS = 2


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        # with --workers N (PROMETHEUS_MULTIPROC_DIR) the counters go to the shared files, as the others do
        reg = None if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else registry
        self.sent = Counter("lockgate_alerts_sent", "Alerts delivered, by channel and alert type",
                            ["channel", "alert_type"], registry=reg)
        self.failed = Counter("lockgate_alerts_failed", "Alerts a channel did not take after every retry",
                              ["channel", "alert_type"], registry=reg)
        self.retries = Counter("lockgate_alerts_retries", "Delivery attempts retried, by channel", ["channel"],
                               registry=reg)
        self.dropped = Counter("lockgate_alerts_dropped", "Alerts dropped before delivery: queue_full",
                               ["reason"], registry=reg)
        self.deduplicated = Counter("lockgate_alerts_deduplicated",
                                    "Alerts not sent because the same alert (type, subject, period) was sent",
                                    ["alert_type", "where"], registry=reg)


class Delivery:
    def __init__(self, senders: dict[str, Sender], metrics: AlertMetrics, *, queue_size: int, max_attempts: int,
                 backoff: float, claim: Callable[[Alert], Awaitable[bool]],
                 enrich: Callable[[Alert], Awaitable[None]]) -> None:
        self.senders = senders
        self.metrics = metrics
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=queue_size)
        self.max_attempts = max(1, int(max_attempts))
        self.backoff = backoff
        self.claim = claim  # across instances: True when this instance sends the alert
        self.enrich = enrich  # off the request path: names looked up in storage
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"lockgate-alerts-{i}") for i in range(WORKERS)]

    def put(self, alert: Alert) -> bool:
        """From anywhere on the event loop, never waits: False (counted) when the queue is full."""
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.metrics.dropped.labels("queue_full").inc()
            return False
        return True

    async def close(self, grace: float = 2.0) -> None:
        """What is queued gets ``grace`` seconds to go out, then the workers stop."""
        if self._tasks and not self.queue.empty():
            try:
                async with asyncio.timeout(grace):
                    await self.queue.join()
            except TimeoutError:
                pass
        await background.stop(self._tasks)

    async def _work(self) -> None:
        while True:
            alert = await self.queue.get()
            try:
                await self.deliver(alert)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - never kills the worker
                log.warning("alert %s: delivery failed (%s)", alert.type, type(exc).__name__)
            finally:
                self.queue.task_done()

    async def deliver(self, alert: Alert) -> None:
        if not await self.claim(alert):
            self.metrics.deduplicated.labels(alert.type, "redis").inc()
            return
        await self.enrich(alert)
        await asyncio.gather(*(self._send(name, sender, alert) for name, sender in self.senders.items()
                               if sender.wants(alert.type)))

    async def _send(self, name: str, sender: Sender, alert: Alert) -> None:
        delay = self.backoff
        for attempt in range(1, self.max_attempts + 1):
            try:
                await sender.send(alert)
            except DeliveryError as exc:
                if attempt == self.max_attempts:
                    self.metrics.failed.labels(name, alert.type).inc()
                    log.warning("alert %s: %s channel failed after %d attempt(s): %s", alert.type, name, attempt, exc)
                    return
                self.metrics.retries.labels(name).inc()
                await asyncio.sleep(delay)
                delay *= 2
            else:
                self.metrics.sent.labels(name, alert.type).inc()
                return
