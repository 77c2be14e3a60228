"""Deployment health checks: ``GET /health`` and the optional background loop.

Each deployment gets a minimal real request through the normal forwarding
path (one token of chat, or one embedding for ``model_info.mode: embedding``).
A deployment is skipped when ``model_info.health_check`` is false or its model
is a wildcard.  The background loop (``general_settings.background_health_checks``)
marks failing deployments unhealthy, which takes them out of routing until a
later check passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ..context import RequestContext
from ..dialects import openai_chat
from ..errors import LockgateError

if TYPE_CHECKING:
    from ..config import Deployment
    from ..gateway import Gateway

log = logging.getLogger("lockgate.health")
CHECK_TIMEOUT = 30.0


class HealthChecks:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._task: asyncio.Task | None = None

    async def check_all(self) -> dict[str, Any]:
        deps = [d for deps in self.gateway.router.groups.values() for d in deps]
        results = await asyncio.gather(*(self.check(d) for d in deps))
        healthy = [r for r in results if r.get("healthy") is True]
        unhealthy = [r for r in results if r.get("healthy") is False]
        skipped = [r for r in results if r.get("healthy") is None]
        return {"healthy_endpoints": healthy, "unhealthy_endpoints": unhealthy, "skipped_endpoints": skipped,
                "healthy_count": len(healthy), "unhealthy_count": len(unhealthy)}

    async def check(self, dep: Deployment) -> dict[str, Any]:
        report: dict[str, Any] = {"model": dep.model_name, "model_id": dep.id, "provider": dep.provider,
                                  "api_base": dep.api_base}
        if dep.model_info.get("health_check") is False or "*" in dep.model:
            return {**report, "healthy": None}
        started = perf_counter()
        try:
            await asyncio.wait_for(self._probe(dep), timeout=min(dep.timeout or CHECK_TIMEOUT, CHECK_TIMEOUT))
        except (TimeoutError, LockgateError) as exc:
            message = exc.message if isinstance(exc, LockgateError) else "health check timed out"
            return {**report, "healthy": False, "error": _masked(message, dep)}
        return {**report, "healthy": True, "latency_ms": round((perf_counter() - started) * 1000, 1)}

    async def _probe(self, dep: Deployment) -> None:
        from .. import forwarding

        embedding = dep.model_info.get("mode") == "embedding"
        body = {"model": dep.model_name, "input": "ping"} if embedding else {
            "model": dep.model_name, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        ctx = RequestContext(request_id=uuid.uuid4().hex, route="embeddings" if embedding else "chat",
                             dialect=openai_chat, headers={}, body=body, model=dep.model_name)
        forwarding.bind(self.gateway, ctx, dep)
        await forwarding.call_once(self.gateway, ctx, _discard, _never)

    def start_background(self, interval: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(interval))

    async def _loop(self, interval: float) -> None:
        while True:
            report = await self.check_all()
            stats = self.gateway.router.stats
            for entry in report["healthy_endpoints"]:
                stats[entry["model_id"]].unhealthy = False
            for entry in report["unhealthy_endpoints"]:
                if not stats[entry["model_id"]].unhealthy:
                    log.warning("deployment %s of %s is unhealthy", entry["model_id"], entry["model"])
                stats[entry["model_id"]].unhealthy = True
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _masked(message: str, dep: Deployment) -> str:
    if dep.api_key and dep.api_key in message:
        message = message.replace(dep.api_key, "***")
    return message[:500]


async def _discard(message: dict[str, Any]) -> None:
    return None


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}
