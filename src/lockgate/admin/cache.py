"""``/cache/*``: LiteLLM's cache administration, admin only, confined to the cache's own namespace
(never Redis FLUSHALL: the rate-limit counters and spend stream live in the same Redis)."""

from __future__ import annotations

from typing import Any

from ..cache.backends import CacheError
from ..errors import BadRequest, LockgateError, NotFound
from .auth import Caller
from .call import Call, Route
from .schemas import Body


class CacheDelete(Body):
    keys: list[str]


class CacheFlush(Body):
    scope: str | None = None


def _cache(call: Call) -> Any:
    cache = getattr(call.gateway, "cache", None)
    if cache is None:
        raise NotFound("the response cache is not configured (litellm_settings.cache: true)", code="cache_off")
    return cache


async def ping(call: Call, caller: Caller) -> dict[str, Any]:
    """Whether the cache's backend answers, its type and counters."""
    caller.require_admin("ping the cache")
    cache = _cache(call)
    try:
        await cache.ping()
    except CacheError as exc:
        raise LockgateError(f"the cache backend does not answer: {exc}", status=503, code="cache_unreachable") \
            from None
    return {"status": "healthy", "cache_type": cache.settings.type, "ping_response": True,
            "stats": cache.backend.stats()}


async def delete(call: Call, caller: Caller, body: CacheDelete) -> dict[str, Any]:
    """Delete entries by the keys answers carried in ``x-litellm-cache-key``."""
    caller.require_admin("delete cache entries")
    cache = _cache(call)
    if any("/" not in key for key in body.keys):
        raise BadRequest("each key is a cache key as sent in x-litellm-cache-key (<scope>/<digest>)", param="keys")
    try:
        deleted = await cache.delete(body.keys)
    except CacheError as exc:
        raise LockgateError(str(exc), status=503, code="cache_unreachable") from None
    return {"status": "success", "deleted": deleted}


async def flushall(call: Call, caller: Caller) -> dict[str, Any]:
    """Every entry of this cache's namespace (nothing else in Redis)."""
    return await _flush(call, caller, None)


async def flush(call: Call, caller: Caller, body: CacheFlush) -> dict[str, Any]:
    """One tenant scope's entries (``team:<id>``, ``key:<hash prefix>``, ``global``), or all with no scope."""
    return await _flush(call, caller, body.scope)


async def _flush(call: Call, caller: Caller, scope: str | None) -> dict[str, Any]:
    caller.require_admin("flush the cache")
    cache = _cache(call)
    if scope is not None and (not scope or "/" in scope):
        raise BadRequest("scope is team:<id>, key:<hash prefix>, master, anonymous or global", param="scope")
    try:
        deleted = await cache.flush(scope)
    except CacheError as exc:
        raise LockgateError(str(exc), status=503, code="cache_unreachable") from None
    return {"status": "success", "deleted": deleted, "scope": scope}


ROUTES = (
    Route("GET", "/cache/ping", ping, "cache"),
    Route("POST", "/cache/delete", delete, "cache", body=CacheDelete),
    Route("POST", "/cache/flushall", flushall, "cache"),
    Route("POST", "/cache/flush", flush, "cache", body=CacheFlush),
)
