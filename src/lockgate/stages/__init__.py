"""Stages around the provider call: one ordered list, built in one place (``build``).

The pipeline runs, after ``route``:

    before   each stage in order; a stage may rewrite ``ctx.body`` or answer itself (a cache hit):
             the first one that answers ends the list and the provider is not called
    call     attempts.call (skipped when a stage answered)
    after    each stage in reverse order, once the answer went out (or failed): accounting last

A stage that reads the answer registers a tap on ``ctx.taps`` in its ``before``: the tap gets the bytes
the client gets, as they go (the whole body of a non-streamed answer, each chunk of a stream), so a
same-dialect passthrough stays byte-faithful.  A stage that must act once the whole answer is known, before
the client sees its end (the cache stores it, so the client's next request already hits), appends a
finisher to ``ctx.finishers``: called only when the answer ran to its end, after the spend is journaled.
``ctx.complete`` then says whether the answer ran to its end (a stream: its last event sent and the client
still there).  A request with no tap and no finisher pays nothing.

Adding a stage: a class with ``name`` and ``async before(gw, ctx, send, receive) -> bool`` (True: it answered), or
``async after(gw, ctx, error)``, or both; a factory in ``FACTORIES`` that returns None when the stage is not
configured (then it costs nothing), and its place in ``ORDER``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..errors import LockgateError
    from ..gateway import Gateway
    from ..http import Receive, Send

# the bytes the client gets; True when the chunk ends the answer (its finishers run before it goes out, so
# a client that stops reading at a stream's last event, as the OpenAI SDK does at [DONE], already sees them)
Tap = Callable[[bytes], bool | None]



class ChunkFilter(Protocol):
    """Rewrites a translated stream's canonical chunks (raise a LockgateError to end it with an error event)."""

    async def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]: ...

    async def finish(self) -> list[dict[str, Any]]: ...


# run before an answer's last bytes, only when it ran to its end (after the spend is journaled)
# (it takes the request: a closure over it would make a reference cycle, each request garbage for the GC)
Finisher = Callable[["RequestContext"], Awaitable[None] | None]


class Stage(Protocol):
    name: str


class Before(Stage, Protocol):
    async def before(self, gw: Gateway, ctx: RequestContext, send: Send, receive: Receive) -> bool:
        """Before the provider call; True when the stage answered the client itself (through ``send``)."""
        ...


class After(Stage, Protocol):
    async def after(self, gw: Gateway, ctx: RequestContext, error: LockgateError | None) -> None:
        """After the answer went out (or failed); exceptions are logged and counted by the pipeline."""
        ...


def _cache(gw: Gateway) -> Stage | None:
    if gw.settings.cache is None:
        return None
    from .cache import CacheStage

    return CacheStage(gw, gw.settings.cache)


def _guardrails(gw: Gateway) -> Stage | None:
    if not gw.settings.guardrails:
        return None
    from .guardrails import GuardrailStage

    return GuardrailStage(gw, gw.settings.guardrails)


def _accounting(gw: Gateway) -> Stage | None:
    from .accounting import Accounting

    return Accounting()


# the order of the stages (``before`` runs in this order, ``after`` in reverse: accounting sees everything)
ORDER: tuple[str, ...] = ("accounting", "guardrails", "cache")  # guardrails before the cache: hits are guarded
FACTORIES: dict[str, Callable[[Gateway], Stage | None]] = {"accounting": _accounting, "guardrails": _guardrails,
                                                           "cache": _cache}


def build(gw: Gateway) -> tuple[list[Before], list[After]]:
    """The configured stages' ``before`` list (in order) and ``after`` list (in reverse order); a stage
    whose factory returns None is in neither."""
    before: list[Before] = []
    after: list[After] = []
    for name in ORDER:
        stage = FACTORIES[name](gw)
        if stage is None:
            continue
        if hasattr(stage, "before"):
            before.append(stage)  # type: ignore[arg-type]
        if hasattr(stage, "after"):
            after.insert(0, stage)  # type: ignore[arg-type]
    return before, after
