"""Routing state shared by every instance through Redis.

Cooldowns: an instance that cools a deployment down writes the recovery time
under ``<prefix>cooldown:<id>`` (expiring with it) and publishes it; every
instance listens and applies it locally, so the hot path never waits on Redis.
Latency: each instance writes its moving averages once a second under
``<prefix>latency:<id>`` (a hash, one field per instance) and reads the others'
back; the router then uses the mean of fresh values.

``<prefix>`` is ``lockgate_settings.governance.redis_key_prefix`` + ``routing:`` (``lockgate:routing:`` by
default).  The listener reconnects when its connection drops (``state/pubsub.py``) and then reloads every
cooldown key, so a cooldown published meanwhile is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from .. import background
from ..state import pubsub

if TYPE_CHECKING:
    from .router import Router

log = logging.getLogger("lockgate.routing")
SYNC_INTERVAL = 1.0
FRESH_FOR = 30.0


class SharedStats:
    def __init__(self, redis: Any, router: Router, prefix: str = "lockgate:routing:") -> None:
        self.redis = redis
        self.router = router
        self.prefix = prefix
        self.channel = prefix + "events"
        self.instance = uuid.uuid4().hex[:12]
        self._tasks: list[asyncio.Task] = []
        self._pending: set[asyncio.Task] = set()
        self._listener: Any = None

    async def start(self) -> None:
        await self._load_cooldowns()  # fails at start when Redis does not answer
        self._listener = pubsub.listener_client(self.redis, self.prefix + "listener")
        self._tasks = [
            asyncio.create_task(pubsub.listen(self._listener, self.channel, self._apply, self._load_cooldowns,
                                              "cooldown")),
            asyncio.create_task(self._sync_latency()),
        ]

    async def close(self) -> None:
        await background.stop(self._tasks)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.aclose()

    def publish_cooldown(self, deployment_id: str, until: float) -> None:
        task = asyncio.get_running_loop().create_task(self._write_cooldown(deployment_id, until))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write_cooldown(self, deployment_id: str, until: float) -> None:
        ttl_ms = max(1, int((until - time.time()) * 1000))
        message = orjson.dumps({"cooldown": deployment_id, "until": until, "from": self.instance})
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self.prefix + "cooldown:" + deployment_id, repr(until), px=ttl_ms)
                pipe.publish(self.channel, message)
                await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - Redis down: routing goes on with local state
            log.warning("could not share a cooldown: %s", type(exc).__name__)

    async def _load_cooldowns(self) -> None:
        ids = [d.id for deps in self.router.groups.values() for d in deps]
        if not ids:
            return
        values = await self.redis.mget([self.prefix + "cooldown:" + i for i in ids])
        for dep_id, value in zip(ids, values, strict=True):
            if value is not None:
                self.router.cool_down(dep_id, float(value), share=False)

    def _apply(self, data: bytes) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            event = orjson.loads(data)
            if event.get("from") != self.instance:
                self.router.cool_down(event["cooldown"], float(event["until"]), share=False)

    async def _sync_latency(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                await self._exchange_latency()
            except Exception as exc:  # noqa: BLE001
                log.warning("latency sync failed: %s", type(exc).__name__)

    async def _exchange_latency(self) -> None:
        now = time.time()
        own = {dep_id: s for dep_id, s in self.router.stats.items() if s.latency is not None}
        ids = [d.id for deps in self.router.groups.values() for d in deps]
        async with self.redis.pipeline(transaction=False) as pipe:
            for dep_id, s in own.items():
                key = self.prefix + "latency:" + dep_id
                pipe.hset(key, self.instance, orjson.dumps([s.own_latency, s.own_ttft, now]))
                pipe.expire(key, int(FRESH_FOR * 2))
            for dep_id in ids:
                pipe.hgetall(self.prefix + "latency:" + dep_id)
            results = await pipe.execute()
        for dep_id, entries in zip(ids, results[-len(ids):] if ids else [], strict=True):
            self._merge(dep_id, entries, now)

    def _merge(self, dep_id: str, entries: dict, now: float) -> None:
        latencies, ttfts = [], []
        for raw in entries.values():
            latency, ttft, at = orjson.loads(raw)
            if now - at <= FRESH_FOR:
                if latency is not None:
                    latencies.append(latency)
                if ttft is not None:
                    ttfts.append(ttft)
        stats = self.router.stats[dep_id]
        if latencies:
            stats.latency = sum(latencies) / len(latencies)
        if ttfts:
            stats.ttft = sum(ttfts) / len(ttfts)
