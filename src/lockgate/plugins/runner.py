"""Running plugins without letting them break or stall a request.

* Pre-call and moderation hooks run on the request path, one after the other,
  each within ``callback_timeout`` seconds.  A deliberate rejection
  (``RejectRequest``, an ``HTTPException``-like error, a returned string) refuses
  the request in the client's dialect; any other exception, or a timeout, is
  logged, counted (``lockgate_plugin_errors_total``) and the request goes on.
* Success and failure hooks run after the answer went out: the request's
  context is put on a bounded queue (full: the event is dropped and counted)
  that a few worker tasks deliver, each call within ``callback_log_timeout``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

from ..errors import LockgateError, type_for_status
from . import loader, payloads
from .api import CustomLogger, DualCache, RejectRequest

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..gateway import Gateway

log = logging.getLogger("lockgate.plugins")

NO_HOOK_ROUTES = frozenset({"count_tokens", "gemini_count_tokens"})  # token counting calls no model
PRE_CALL = ("user_api_key_dict", "cache", "data", "call_type")
MODERATION = ("data", "user_api_key_dict", "call_type")
LOG_EVENT = ("kwargs", "response_obj", "start_time", "end_time")
SUCCESS_HOOK = ("data", "user_api_key_dict", "response")
FAILURE_HOOK = ("request_data", "original_exception", "user_api_key_dict")
SUCCESS_METHODS = (("async_log_success_event", LOG_EVENT), ("log_success_event", LOG_EVENT),
                   ("async_post_call_success_hook", SUCCESS_HOOK))
FAILURE_METHODS = (("async_log_failure_event", LOG_EVENT), ("log_failure_event", LOG_EVENT),
                   ("async_post_call_failure_hook", FAILURE_HOOK))
_FAILED = object()

Call = Callable[[dict[str, Any]], Any]


@dataclass
class Hook:
    plugin: str  # the configured path, the metric's label
    name: str  # the method's name
    call: Call  # takes the hook's arguments by name
    threaded: bool = False  # a synchronous logging method: run in a worker thread


@dataclass
class Plugins:
    """The loaded plugins of one gateway; registered into ``gateway.hooks``."""

    gw: Gateway
    pre_call: list[Hook] = field(default_factory=list)
    moderation: list[Hook] = field(default_factory=list)  # run after every pre-call hook, before the call
    success: list[Hook] = field(default_factory=list)
    failure: list[Hook] = field(default_factory=list)
    cache: DualCache = field(default_factory=DualCache)
    queue: asyncio.Queue[tuple[RequestContext, Exception | None, float, float]] | None = None
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    threads: ThreadPoolExecutor | None = None  # synchronous logging methods: their own threads, never the loop's

    def load(self) -> None:
        s, source = self.gw.settings.plugins, self.gw.settings.source
        folder = source.parent if source is not None else None
        objects: dict[str, Any] = {}
        for path in dict.fromkeys([*s.callbacks, *s.success_callbacks, *s.failure_callbacks]):
            objects[path] = loader.load(path, folder)
        for path in s.callbacks:
            self._add(path, objects[path], pre=True, success=True, failure=True)
        for path in s.success_callbacks:
            self._add(path, objects[path], pre=False, success=True, failure=False)
        for path in s.failure_callbacks:
            self._add(path, objects[path], pre=False, success=False, failure=True)

    def _add(self, path: str, obj: Any, pre: bool, success: bool, failure: bool) -> None:
        if inspect.isfunction(obj) or inspect.isbuiltin(obj):  # LiteLLM's callback functions
            hook = Hook(path, obj.__name__, _adapt(obj, LOG_EVENT), not inspect.iscoroutinefunction(obj))
            (self.success if success else self.failure).append(hook)
            return
        found = False
        if pre:
            for name, names, into in (("async_pre_call_hook", PRE_CALL, self.pre_call),
                                      ("async_moderation_hook", MODERATION, self.moderation)):
                if (fn := _defined(obj, name)) is not None:
                    into.append(Hook(path, name, _adapt(fn, names)))
                    found = True
        for wanted, methods, into in ((success, SUCCESS_METHODS, self.success),
                                      (failure, FAILURE_METHODS, self.failure)):
            for name, names in methods if wanted else ():
                if (fn := _defined(obj, name)) is not None and all((h.plugin, h.name) != (path, name) for h in into):
                    into.append(Hook(path, name, _adapt(fn, names), not inspect.iscoroutinefunction(fn)))
                    found = True
        if not found:
            log.warning("callback %s defines none of the hooks Lockgate calls (docs/plugins.md)", path)

    async def start(self) -> None:
        self.load()
        hooks = self.gw.hooks
        if self.pre_call or self.moderation:
            hooks.pre_request.append(self.before_call)
        if self.success or self.failure:
            s = self.gw.settings.plugins
            self.queue = asyncio.Queue(maxsize=s.queue_size)
            loop = asyncio.get_running_loop()
            self.workers = [loop.create_task(self._work(), name=f"lockgate-plugins-{i}") for i in range(s.workers)]
            if any(h.threaded for h in [*self.success, *self.failure]):
                self.threads = ThreadPoolExecutor(s.workers, thread_name_prefix="lockgate-plugin")
        if self.success:
            hooks.post_response.append(self.after_success)
        if self.failure:
            hooks.on_error.append(self.after_failure)
        names = sorted({h.plugin for h in [*self.pre_call, *self.moderation, *self.success, *self.failure]})
        log.info("plugins: %s", ", ".join(names) or "none with hooks")

    async def close(self) -> None:
        """Deliver what is queued (for up to one log timeout), then stop the workers."""
        if self.queue is not None and self.workers:
            try:
                await asyncio.wait_for(self.queue.join(), self.gw.settings.plugins.log_timeout)
            except TimeoutError:
                log.warning("plugins: %d events not delivered at shutdown", self.queue.qsize())
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        self.workers = []
        if self.threads is not None:
            self.threads.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ on the request path

    async def before_call(self, gw: Gateway, ctx: RequestContext) -> None:
        """Pre-call and moderation hooks, in the configured order; may replace the body and its model."""
        if ctx.route in NO_HOOK_ROUTES:
            return
        data = ctx.body
        asked = data.get("model")
        args = {"user_api_key_dict": payloads.caller(ctx, self._master_hash()), "cache": self.cache,
                "call_type": payloads.call_type(ctx.route)}
        timeout = gw.settings.plugins.timeout
        try:
            for hook in self.pre_call:
                data["proxy_server_request"] = payloads.request_view(ctx)
                args["data"] = data
                result = await self._bounded(hook, args, timeout)
                data.pop("proxy_server_request", None)
                if result is not _FAILED and result is not None:
                    data = self._result(hook, ctx.route, result, data)
            args["data"] = data
            for hook in self.moderation:  # its return value is not used (as LiteLLM)
                await self._bounded(hook, args, timeout)
        finally:
            data.pop("proxy_server_request", None)
        ctx.body = data
        model = data.get("model")
        if model != asked and isinstance(model, str) and model and ctx.route != "generate":
            ctx.model = model  # the pipeline authorizes the new model again

    async def _bounded(self, hook: Hook, args: dict[str, Any], timeout: float) -> Any:
        try:
            async with asyncio.timeout(timeout):
                result = hook.call(args)
                if inspect.isawaitable(result):
                    result = await result
            return result
        except Exception as exc:  # noqa: BLE001 - a plugin's failure never fails the request
            rejection = rejection_of(exc)
            if rejection is not None:
                raise rejection from None
            self.failed(hook.plugin, hook.name, exc, timeout)
            return _FAILED

    def _result(self, hook: Hook, route: str, result: Any, data: dict[str, Any]) -> dict[str, Any]:
        """LiteLLM's pre-call return values: a dict replaces the body, a string or an exception rejects.
        Anything else, or a body without the route's required fields, is ignored (and counted)."""
        if isinstance(result, dict):
            result.pop("proxy_server_request", None)
            if _has_required_fields(route, result):
                return result
            problem = "a body without the route's required fields"
        elif isinstance(result, str):
            raise _rejected(result, 400)
        elif isinstance(result, Exception):
            raise rejection_of(result) or _rejected(str(result) or type(result).__name__, 400)
        else:
            problem = f"a {type(result).__name__} (expected a dict, a string or None)"
        self.count(hook.plugin, hook.name, "bad_return")
        log.warning("plugin %s: %s returned %s: ignored", hook.plugin, hook.name, problem)
        return data

    # ------------------------------------------------------------------ after the answer

    async def after_success(self, gw: Gateway, ctx: RequestContext) -> None:
        self._put(ctx, None)

    async def after_failure(self, gw: Gateway, ctx: RequestContext, error: Exception | None) -> None:
        self._put(ctx, error)

    def _put(self, ctx: RequestContext, error: Exception | None) -> None:
        if ctx.route in NO_HOOK_ROUTES or self.queue is None:
            return
        try:
            self.queue.put_nowait((ctx, error, time(), perf_counter()))
        except asyncio.QueueFull:
            self.count("*", "queue", "dropped")

    async def _work(self) -> None:
        assert self.queue is not None
        while True:
            ctx, error, wall, now = await self.queue.get()
            try:
                await self._deliver(ctx, error, wall, now)
            except Exception:
                log.exception("plugins: could not deliver the event of request %s", ctx.request_id)
            finally:
                self.queue.task_done()

    async def _deliver(self, ctx: RequestContext, error: Exception | None, wall: float, now: float) -> None:
        failed = error is not None or ctx.error_kind is not None
        if failed and error is None:  # a stream that failed after it started
            error = LockgateError(f"the stream failed after it started ({ctx.error_kind})", status=502,
                                  kind=ctx.error_kind)
        end = datetime.fromtimestamp(wall, UTC)
        start = end - timedelta(seconds=max(0.0, now - ctx.started))
        key = payloads.caller(ctx, self._master_hash())
        response = None if failed else payloads.response_obj(ctx)
        args = {"kwargs": payloads.log_kwargs(ctx, key, error, start, end), "response_obj": response,
                "start_time": start, "end_time": end, "data": ctx.body, "request_data": ctx.body,
                "user_api_key_dict": key, "response": response, "original_exception": error}
        timeout = self.gw.settings.plugins.log_timeout
        for hook in self.failure if failed else self.success:
            try:
                async with asyncio.timeout(timeout):
                    if hook.threaded:  # a hanging one holds a plugin thread, not the loop's default executor
                        await asyncio.get_running_loop().run_in_executor(self.threads, hook.call, args)
                    else:
                        result = hook.call(args)
                        if inspect.isawaitable(result):
                            await result
            except Exception as exc:  # noqa: BLE001 - logged and counted, the next hook still runs
                self.failed(hook.plugin, hook.name, exc, timeout)

    # ------------------------------------------------------------------ errors

    def failed(self, plugin: str, hook: str, exc: BaseException, timeout: float) -> None:
        timed_out = isinstance(exc, TimeoutError)
        self.count(plugin, hook, "timeout" if timed_out else "exception")
        if timed_out:
            log.warning("plugin %s: %s timed out after %g s", plugin, hook, timeout)
        else:  # the type only: a plugin's message may quote the prompt
            log.warning("plugin %s: %s raised %s", plugin, hook, type(exc).__name__)
            log.debug("plugin %s: %s traceback", plugin, hook, exc_info=exc)

    def count(self, plugin: str, hook: str, error: str) -> None:
        self.gw.metrics.plugin_error(plugin, hook, error)

    def _master_hash(self) -> str | None:
        gov = self.gw.governance
        return getattr(gov, "master_hash", None)


def rejection_of(exc: BaseException) -> LockgateError | None:
    """A deliberate refusal: ``RejectRequest`` or an exception with an integer ``status_code`` and a ``detail``."""
    if isinstance(exc, RejectRequest):
        return _rejected(exc.message, exc.status_code)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool) and hasattr(exc, "detail"):
        detail = exc.detail
        if isinstance(detail, dict):
            detail = detail.get("error") or detail.get("message") or detail
        return _rejected(str(detail), status)
    return None


def _has_required_fields(route: str, body: dict[str, Any]) -> bool:
    from ..pipeline import REQUIRED  # the front doors' own checks (pipeline.parse)

    return all(isinstance(body.get(name), kind) for name, kind, _ in REQUIRED.get(route, ()))


def _rejected(message: str, status: int) -> LockgateError:
    status = status if 400 <= status < 600 else 400
    return LockgateError(message or "rejected by a plugin", status=status, type=type_for_status(status),
                         code="rejected_by_plugin", kind="plugin_rejected")


def _defined(obj: Any, name: str) -> Callable[..., Any] | None:
    """The object's own hook ``name``: None when absent or left as ``CustomLogger``'s no-op."""
    fn: Callable[..., Any] | None = getattr(obj, name, None)
    if fn is None or not callable(fn):
        return None
    base = getattr(CustomLogger, name)
    if getattr(type(obj), name, None) is base:
        return None
    return fn


def _adapt(fn: Callable[..., Any], names: tuple[str, ...]) -> Call:
    """Call ``fn`` with the hook's arguments: by name when its parameters use LiteLLM's names (so older
    and newer LiteLLM signatures both work), else in LiteLLM's order."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return lambda args: fn(*[args[n] for n in names])
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = {p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    extra = any(p.kind is p.VAR_KEYWORD for p in params)
    known = (*FAILURE_HOOK, "traceback_str") if names == FAILURE_HOOK else names
    if named & set(known) and required <= set(known):
        use = [n for n in known if n in named or (extra and n in names)]
        return lambda args: fn(**{n: args.get(n) for n in use})
    return lambda args: fn(*[args[n] for n in names])

