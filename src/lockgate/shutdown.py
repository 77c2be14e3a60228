"""Graceful shutdown and readiness.

On SIGTERM or SIGINT, in every process that serves (the only one, or each worker of ``serve --workers N``:
uvicorn's supervisor sends its workers SIGTERM):

1. draining: ``GET /health/readiness`` answers 503 at once, liveness stays 200, everything else is served
   as before for ``general_settings.shutdown_grace_seconds`` (default 5), so load balancers notice;
2. then uvicorn stops: the listener closes, idle keep-alive connections close, requests and streams in
   flight run on for up to ``general_settings.graceful_shutdown_timeout`` seconds (default 30);
3. at that deadline the streams still open end with an error event in their client's dialect (503,
   ``shutting_down``: ``http._StreamState.end``) and their spend is journaled like that of any stream that
   ends with an error; a non-streamed request still running ``END_MARGIN`` seconds later is cancelled by
   uvicorn;
4. the lifespan shutdown closes the gateway (spend flush, exporters, store) and the process exits 0.

A second SIGINT (Ctrl-C twice) forces the exit (no close); a repeated SIGTERM is ignored (Ctrl-C reaches the
workers of ``--workers N`` directly, then their supervisor sends them SIGTERM).

How: uvicorn's ``Server`` catches the two signals itself (``handle_exit`` sets ``should_exit``, then it stops
the listener and waits ``timeout_graceful_shutdown``).  At lifespan start-up ``Drain.install`` takes them over
from the ``Server`` running this process (the owner of the handler uvicorn installed, so the workers that
uvicorn's supervisor builds are covered too) and sets ``should_exit`` itself, after the grace.  Nothing is added
on the request path: the open streams are found at the deadline (``http.open_streams``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import __version__, http
from .context import RequestContext
from .errors import LockgateError

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("lockgate")

END_MARGIN = 3.0  # seconds after the deadline for the ended streams' last events and spend, before uvicorn cancels
PROBE_TTL = 1.0  # a readiness answer's dependency checks are reused for this long
PROBE_TIMEOUT = 1.0  # a dependency slower than this is not ready (Kubernetes probes time out after 1 s)


def shutting_down() -> LockgateError:
    return LockgateError("the gateway is shutting down", status=503, code="shutting_down", kind="shutting_down")


class Readiness:
    """``GET /health/readiness``: 503 while draining, or when the database or (if configured) Redis does not
    answer; the checks (``SELECT 1``, ``PING``) run at most once per ``PROBE_TTL``, shared by concurrent probes."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.draining = False
        self._checked_at = -math.inf
        self._deps: dict[str, str] = {}
        self._probe: asyncio.Future[dict[str, str]] | None = None

    async def answer(self) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"status": "healthy", "version": __version__, "models": len(self.gw.groups)}
        if self.draining:
            body.update(status="draining", failed=["shutting_down"])
            return 503, body
        deps = await self.dependencies()
        body.update(deps)
        failed = [name for name, state in deps.items() if state == "disconnected"]
        if failed:
            body.update(status="unhealthy", failed=failed)
            return 503, body
        return 200, body

    async def dependencies(self) -> dict[str, str]:
        if time.monotonic() - self._checked_at < PROBE_TTL:
            return self._deps
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._probe)  # a probe that goes away does not cancel the shared check

    async def _check(self) -> dict[str, str]:
        try:
            db, redis = await asyncio.gather(self._db(), self._redis())
            self._deps = {"db": db, "redis": redis}
            self._checked_at = time.monotonic()
            return self._deps
        finally:
            self._probe = None

    async def _db(self) -> str:
        store = self.gw.store
        if store is None:
            return "not configured"
        return "connected" if await _within(store.ping()) else "disconnected"

    async def _redis(self) -> str:
        if self.gw.redis is None:
            return "not configured"
        return "connected" if await _within(self.gw.redis.ping()) else "disconnected"


async def _within(check: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(check, PROBE_TIMEOUT))
    except Exception:  # noqa: BLE001  (a timeout, a refused connection: not ready)
        return False


class Drain:
    """This process's graceful shutdown, driving the uvicorn ``Server`` that runs it (see the module's text)."""

    def __init__(self, server: Any, readiness: Readiness, grace: float, timeout: float) -> None:
        self.server = server
        self.readiness = readiness
        self.grace = grace
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.signal: int | None = None

    @classmethod
    def install(cls, readiness: Readiness) -> Drain | None:
        """Take SIGTERM and SIGINT over from the uvicorn ``Server`` running this process; None when there is
        none (another ASGI server, or not the main thread): its own shutdown applies."""
        if threading.current_thread() is not threading.main_thread():
            return None
        try:
            from uvicorn.server import Server
        except ImportError:  # pragma: no cover
            return None
        server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
        if not isinstance(server, Server):
            return None
        settings = readiness.gw.settings
        drain = cls(server, readiness, settings.shutdown_grace_seconds, settings.graceful_shutdown_timeout)
        server.config.timeout_graceful_shutdown = math.ceil(drain.timeout + END_MARGIN)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, drain.handle_signal)  # uvicorn restores the original handlers at its exit
        return drain

    def handle_signal(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler (main thread, between two bytecodes): flags only, the rest on the loop."""
        if self.signal is None:
            self.signal = sig
            self.readiness.draining = True  # readiness answers 503 from now on
            self.loop.call_soon_threadsafe(self._begin)
        elif sig == signal.SIGINT:  # Ctrl-C again: leave now
            self.server.force_exit = True
            self.server.should_exit = True

    def _begin(self) -> None:
        name = signal.Signals(self.signal).name if self.signal is not None else "signal"
        log.info("%s: draining (readiness 503), still serving for %g s (general_settings.shutdown_grace_seconds)",
                 name, self.grace)
        self.loop.call_later(self.grace, self._stop)

    def _stop(self) -> None:
        busy = len(self.server.server_state.tasks)
        log.info("shutting down: no new connections; %d request(s) in flight get up to %g s "
                 "(general_settings.graceful_shutdown_timeout)", busy, self.timeout)
        self.server.config.timeout_graceful_shutdown = math.ceil(self.timeout + END_MARGIN)
        self.server.should_exit = True
        self.loop.call_later(self.timeout, end_open_streams)


def end_open_streams() -> int:
    """End the streams still open with the shutdown error, each in its client's dialect."""
    err = shutting_down()
    ended = 0
    for state in http.open_streams():
        ctx = request_context(state.task)
        if ctx is None:
            continue  # not a model request's stream: uvicorn cancels it after END_MARGIN
        event = ctx.dialect.stream_encoder(ctx.model, ctx.request_id).error(err)
        ctx.error_kind = err.kind
        if state.end(event):
            ended += 1
    if ended:
        log.warning("graceful shutdown timeout: ended %d open stream(s) with a shutting_down error event", ended)
    return ended


def request_context(task: asyncio.Task[Any]) -> RequestContext | None:
    """The ``RequestContext`` of a request's task: the first ``ctx`` down its chain of awaited coroutines
    (``app.model_request`` holds it a few frames below uvicorn's)."""
    coro: Any = task.get_coro()
    for _ in range(64):
        frame = getattr(coro, "cr_frame", None)
        if frame is None:
            return None
        ctx = frame.f_locals.get("ctx")
        if isinstance(ctx, RequestContext):
            return ctx
        coro = getattr(coro, "cr_await", None)
    return None
