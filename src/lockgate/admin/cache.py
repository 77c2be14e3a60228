"""``/cache/*``: LiteLLM's cache administration, admin only, confined to the cache's own namespace
(never Redis FLUSHALL: the rate-limit counters and spend stream live in the same Redis)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ..cache.backends import CacheError
from ..errors import BadRequest, LockgateError, NotFound
from .auth import Caller, authenticate
from .schemas import Body

router = APIRouter()


class CacheDelete(Body):
    keys: list[str]


class CacheFlush(Body):
    scope: str | None = None


def _cache(request: Request) -> Any:
    cache = getattr(request.app.state.gateway, "cache", None)
    if cache is None:
        raise NotFound("the response cache is not configured (litellm_settings.cache: true)", code="cache_off")
    return cache


@router.get("/cache/ping", tags=["cache"])
async def ping(request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    """Whether the cache's backend answers, its type and counters."""
    caller.require_admin("ping the cache")
    cache = _cache(request)
    try:
        await cache.ping()
    except CacheError as exc:
        raise LockgateError(f"the cache backend does not answer: {exc}", status=503, code="cache_unreachable") \
            from None
    return {"status": "healthy", "cache_type": cache.settings.type, "ping_response": True,
            "stats": cache.backend.stats()}


@router.post("/cache/delete", tags=["cache"])
async def delete(body: CacheDelete, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    """Delete entries by the keys answers carried in ``x-litellm-cache-key``."""
    caller.require_admin("delete cache entries")
    cache = _cache(request)
    if any("/" not in key for key in body.keys):
        raise BadRequest("each key is a cache key as sent in x-litellm-cache-key (<scope>/<digest>)", param="keys")
    try:
        deleted = await cache.delete(body.keys)
    except CacheError as exc:
        raise LockgateError(str(exc), status=503, code="cache_unreachable") from None
    return {"status": "success", "deleted": deleted}


@router.post("/cache/flushall", tags=["cache"])
async def flushall(request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    """Every entry of this cache's namespace (nothing else in Redis)."""
    return await _flush(request, caller, None)


@router.post("/cache/flush", tags=["cache"])
async def flush(body: CacheFlush, request: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    """One tenant scope's entries (``team:<id>``, ``key:<hash prefix>``, ``global``), or all with no scope."""
    return await _flush(request, caller, body.scope)


async def _flush(request: Request, caller: Caller, scope: str | None) -> dict[str, Any]:
    caller.require_admin("flush the cache")
    cache = _cache(request)
    if scope is not None and (not scope or "/" in scope):
        raise BadRequest("scope is team:<id>, key:<hash prefix>, master, anonymous or global", param="scope")
    try:
        deleted = await cache.flush(scope)
    except CacheError as exc:
        raise LockgateError(str(exc), status=503, code="cache_unreachable") from None
    return {"status": "success", "deleted": deleted, "scope": scope}
