"""Each alert key is sent once while it lives: in process always, and through Redis (``SET NX EX``)
when the gateway has Redis, so that several instances never send the same alert twice."""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

log = logging.getLogger("lockgate.alerts")

LOCAL_LIMIT = 50_000  # keys remembered in process; expired ones are pruned first


class Dedupe:
    def __init__(self, redis: Any = None, prefix: str = "lockgate:") -> None:
        self.redis = redis  # redis.asyncio.Redis, or None
        self.prefix = prefix + "alert:"
        self._until: dict[str, float] = {}  # key -> monotonic expiry
        self.redis_errors = 0

    def first_here(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is seen in this process within ``ttl`` seconds (and remembers it)."""
        now = monotonic()
        until = self._until.get(key)
        if until is not None and until > now:
            return False
        if len(self._until) >= LOCAL_LIMIT:
            self._prune(now)
        self._until[key] = now + ttl
        return True

    def forget(self, key: str) -> None:
        self._until.pop(key, None)

    async def first_everywhere(self, key: str, ttl: float) -> bool:
        """With Redis: True for the one instance whose ``SET NX`` took the key.  When Redis does not
        answer the alert is sent (a possible duplicate beats a lost alert)."""
        if self.redis is None:
            return True
        try:
            taken = await self.redis.set(self.prefix + key, b"1", nx=True, ex=max(1, int(ttl + 0.999)))
        except Exception as exc:  # noqa: BLE001
            self.redis_errors += 1
            log.warning("alert dedupe: Redis did not answer (%s); sending anyway", type(exc).__name__)
            return True
        return bool(taken)

    def _prune(self, now: float) -> None:
        self._until = {k: u for k, u in self._until.items() if u > now}
        while len(self._until) >= LOCAL_LIMIT:  # all alive: drop the oldest half
            for k in list(self._until)[: LOCAL_LIMIT // 2]:
                del self._until[k]
