"""The accounting stage (always on, the last ``after``): usage -> metrics -> spend (governance) ->
access log -> post_response / on_error plugin hooks.

Each plugin hook is isolated: an exception is logged and counted, never the client's problem.  Plugin
events are only queued here and delivered by worker tasks after the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .. import tokens
from ..observability import options as metrics_options

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..errors import LockgateError
    from ..gateway import Gateway
    from ..ui.data.tail import LiveTail

log = logging.getLogger("lockgate")


class Accounting:
    name = "accounting"
    tail: LiveTail | None = None  # the admin UI's live tail (ui/data/tail.py), set when the first one opens

    async def after(self, gw: Gateway, ctx: RequestContext, error: LockgateError | None) -> None:
        m = gw.metrics
        hit = ctx.cache_hit
        provider = ctx.provider.name if ctx.provider else ("cache" if hit is not None else "none")
        model = ctx.model if ctx.deployment or hit is not None else "unknown"
        total = perf_counter() - ctx.started
        ttft = ctx.first_token_at - ctx.started if ctx.first_token_at is not None else None
        m.observe_request(model, provider, ctx.status, total, ctx.upstream_seconds, ttft)
        if gw.governance is not None:
            await gw.governance.account(ctx)  # spend journaled (if not yet), counters settled, slots released
        if gw.alerts is not None:  # general_settings.alerting: a few comparisons, an enqueue (alerts/service.py)
            gw.alerts.observe(ctx, error)
        if ctx.usage is None and ctx.status == 200 and ctx.deployment is not None and ctx.route in tokens.ROUTES:
            # rare (the provider reported no usage): counted in a thread, after the slots were released
            ctx.usage = await tokens.estimate_missing_usage(ctx.body, ctx.deployment.model)
        usage = ctx.usage or {}
        prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        m.observe_tokens(model, prompt, completion, ctx.error_kind)
        record = access_record(ctx, provider, total, prompt, completion)
        if ctx.grant is not None:
            record["cost"] = ctx.grant.cost
            if ctx.grant.cost:  # lockgate_spend_usd_total, key / team labels bounded (observability/options.py)
                opts = gw.settings.metrics
                m.observe_spend(model, *metrics_options.spend_labels(opts, ctx.principal), ctx.grant.cost,
                                opts.max_series)
        if ctx.guardrails is not None:
            m.observe_guardrails(ctx.guardrails.results)
        if ctx.cache_result is not None:
            record["cache"] = ctx.cache_result
        gw.access_log.write(record)
        if self.tail is not None and self.tail.subscribers:  # only while a live tail is open
            self.tail.publish(gw, ctx)
        if ctx.error_kind:
            for on_error in gw.hooks.on_error:
                await _isolated(gw, ctx, "on_error", on_error, error)
        else:
            for post_response in gw.hooks.post_response:
                await _isolated(gw, ctx, "post_response", post_response)


async def _isolated(gw: Gateway, ctx: RequestContext, where: str, hook: Callable[..., Awaitable[None]],
                    *args: Any) -> None:
    """One after-the-answer hook; its exception is logged and counted, never raised."""
    try:
        await hook(gw, ctx, *args)
    except Exception as exc:  # noqa: BLE001
        name = getattr(hook, "__qualname__", type(hook).__name__)
        gw.metrics.plugin_error(name, where, "exception")
        log.warning("request %s: %s hook %s raised %s", ctx.request_id, where, name, type(exc).__name__)


def access_record(ctx: RequestContext, provider: str, total: float, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "request_id": ctx.request_id,
        "route": ctx.route,
        "model": ctx.model or None,
        "provider": provider,
        "deployment": ctx.deployment.id if ctx.deployment else None,
        "status": ctx.status,
        "stream": ctx.stream,
        "passthrough": ctx.passthrough,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "latency_ms": round(total * 1000, 3),
        "upstream_ms": round(ctx.upstream_seconds * 1000, 3),
        "overhead_ms": round(max(0.0, total - ctx.upstream_seconds) * 1000, 3),
        "ttft_ms": round((ctx.first_token_at - ctx.started) * 1000, 3) if ctx.first_token_at else None,
        "error": ctx.error_kind,
    }
