"""The call stage with retries and fallbacks.

Tries deployments of the model group chosen by the router; on a provider
failure that happened before anything reached the client it retries (back-off
with jitter, ``Retry-After`` honoured when the same deployment is tried again),
then moves along the fallback groups (which may use another provider and
dialect: the client still gets its own).  A failure after the answer started
ends the stream with an error event instead (see forwarding).
"""

from __future__ import annotations

import asyncio
from time import perf_counter

from . import forwarding
from .context import RequestContext
from .errors import BadRequest, LockgateError, RateLimited, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from .forwarding import estimate_tokens
from .gateway import Gateway
from .http import Receive, Send
from .routing.retry import counts_against_deployment, failure_kind
from .routing.router import NoDeploymentLeft

PROVIDER_FAILURES = (UpstreamError, UpstreamUnreachable, UpstreamTimeout)
# error kinds (LockgateError.kind) of a stream that ended badly through the client's own fault
CLIENT_KINDS = frozenset({"bad_request", "upstream_4xx"})


async def call(gw: Gateway, ctx: RequestContext, send: Send, receive: Receive) -> None:
    router = gw.router
    groups = [ctx.model_group]
    tried: set[str] = set()
    last: LockgateError | None = None
    index = 0
    while index < len(groups):
        group = groups[index]
        if _too_long_for(router, group, ctx):  # proactive: the prompt cannot fit this group
            index, last = _next_group(gw, ctx, groups, index, "context_window", last or _context_error(group))
            continue
        try:
            dep = router.pick(group, tried)
        except (NoDeploymentLeft, RateLimited) as exc:
            index, last = _next_group(gw, ctx, groups, index, None, last or _as_error(exc))
            continue
        forwarding.bind(gw, ctx, dep)
        tried.add(dep.id)
        router.started(dep)
        started = perf_counter()
        tracing = gw.tracing if ctx.span is not None else None
        span = tracing.start_attempt(ctx, dep, ctx.span) if tracing is not None and ctx.span is not None else None
        try:
            await forwarding.call_once(gw, ctx, send, receive)
        except PROVIDER_FAILURES as err:
            if tracing is not None and span is not None:
                tracing.end_attempt(ctx, span, err)
            _as_bad_gateway(ctx, err)
            kind = failure_kind(err)
            # a failure the client's body caused (400/413/422) is no sign of the deployment's health
            _failed(gw, dep, err, kind if counts_against_deployment(err, kind) else "client")
            gw.metrics.observe_attempt(dep.id, group, False)
            if ctx.status:  # the answer already started: nothing left to retry
                raise
            last = err
            retries_left = router.retry.retries_for(kind) - ctx.retries
            if retries_left > 0:
                ctx.retries += 1
                gw.metrics.retried(group)
                if not _untried(router, group, tried):
                    tried.difference_update(d.id for d in router.deployments(group))
                await asyncio.sleep(_delay(router, ctx, group, tried, dep.id, err))
                continue
            index, last = _next_group(gw, ctx, groups, index, kind, err)
            continue
        except BaseException as exc:
            router.failed(dep, LockgateError("aborted"), "aborted")
            if tracing is not None and span is not None:
                tracing.end_attempt(ctx, span, exc if isinstance(exc, Exception) else None)
            raise
        if tracing is not None and span is not None:
            tracing.end_attempt(ctx, span, None)
        _record_success(gw, ctx, dep, group, started)
        if ctx.fallbacks:
            gw.metrics.fell_back(ctx.model_group, group, not ctx.error_kind)
        return
    assert last is not None
    if ctx.fallbacks:
        gw.metrics.fell_back(ctx.model_group, groups[-1], False)
    raise last


def _failed(gw: Gateway, dep, err: LockgateError, kind: str) -> None:
    """``router.failed``, and a cooldown it started counted (lockgate_deployment_cooldowns_total)."""
    stats = gw.router.stats[dep.id]
    before = stats.cooldown_until
    gw.router.failed(dep, err, kind)
    if stats.cooldown_until > before:
        gw.metrics.cooled_down(dep.id, getattr(err, "upstream_status", None) or err.status or 0)


def _as_bad_gateway(ctx: RequestContext, err: LockgateError) -> None:
    """A provider's 5xx that a stream decoder raised (an error event before the first byte) is a 502
    naming the provider's status, as ``forwarding.upstream_error`` does for error answers."""
    if type(err) is not UpstreamError or err.status <= 502 or err.upstream_status is not None:
        return  # 502: the gateway's own verdict on the provider's answer (not JSON, ...)
    name = ctx.provider.name if ctx.provider is not None else "?"
    err.upstream_status = err.status
    err.message = f"provider {name} answered {err.status}: {err.message}"
    err.headers["x-lockgate-upstream-status"] = str(err.status)
    err.status = 502


def _record_success(gw: Gateway, ctx: RequestContext, dep, group: str, started: float) -> None:
    usage = ctx.usage or {}
    tokens = int(usage.get("total_tokens") or 0)
    ttft = ctx.first_token_at - ctx.started if ctx.first_token_at else None
    seconds = perf_counter() - started
    if ctx.error_kind:  # a stream that failed after it started: the provider's fault unless it said otherwise
        kind = "client" if ctx.error_kind in CLIENT_KINDS else "server"
        _failed(gw, dep, LockgateError("stream failed", status=502), kind)
        gw.metrics.observe_attempt(dep.id, group, False)
    else:
        gw.router.finished(dep, seconds, ttft, tokens)
        gw.metrics.observe_attempt(dep.id, group, True, seconds)


def _next_group(gw: Gateway, ctx: RequestContext, groups: list[str], index: int, kind: str | None,
                err: LockgateError) -> tuple[int, LockgateError]:
    """Append this group's fallbacks (once each) and move on to the next group."""
    for name in gw.router.fallback_groups(groups[index], kind, ctx.request_fallbacks):
        if name not in groups:
            groups.append(name)
    if index + 1 < len(groups):
        ctx.fallbacks += 1
    return index + 1, err


def _untried(router, group: str, tried: set[str]) -> bool:
    return any(d.id not in tried for d in router.deployments(group))


def _delay(router, ctx: RequestContext, group: str, tried: set[str], failed_id: str,
           err: LockgateError) -> float:
    """Back-off before the next attempt; Retry-After only matters for the same deployment."""
    same = not _untried(router, group, tried - {failed_id}) or failed_id not in tried
    delay = router.retry.delay(ctx.retries - 1, err, router.rng)
    return delay if same else min(delay, router.retry.base_delay * (2 ** (ctx.retries - 1)))


def _too_long_for(router, group: str, ctx: RequestContext) -> bool:
    """True when every deployment of the group declares max_input_tokens and the prompt exceeds them all."""
    limit = router.context_limit(group)
    return limit is not None and estimate_tokens(ctx.body) > limit


def _context_error(group: str) -> LockgateError:
    return BadRequest(f"the prompt is longer than the context window of {group!r}", code="context_length_exceeded")


def _as_error(exc: Exception) -> LockgateError:
    if isinstance(exc, LockgateError):
        return exc
    return RateLimited(f"no deployment of {exc.args[0]!r} is available", headers={"Retry-After": "1"})
