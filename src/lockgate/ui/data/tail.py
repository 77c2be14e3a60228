"""The live tail: each finished request, as a logs row, pushed to the UI's open tails (one SSE stream each).

The accounting stage calls ``publish`` only while someone is subscribed (``LiveTail.subscribers`` is
empty otherwise: one truthiness test per request, nothing built).  Each subscriber has a bounded queue;
a subscriber that does not keep up loses the rows that do not fit and gets, after the rows it kept, one
``{"dropped": n}`` marker.  Rows are filtered per subscriber with the management API's visibility rule.

A tail shows the requests this process answered: with ``serve --workers N`` or several instances, the
requests of the worker / instance the stream is connected to (docs/ui.md).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ...admin.auth import Caller
from ...errors import LockgateError
from .scope import may_read_row

if TYPE_CHECKING:
    from ...context import RequestContext
    from ...gateway import Gateway

QUEUE_LIMIT = 500  # rows waiting per subscriber
MAX_SUBSCRIBERS = 100
HEARTBEAT_SECONDS = 15.0


class TooManyTails(LockgateError):
    status = 503
    type = "service_unavailable"
    code = "too_many_tails"


class Subscriber:
    __slots__ = ("caller", "dropped", "id", "limit", "queue", "stopped", "wake")

    def __init__(self, caller: Caller, limit: int) -> None:
        self.caller = caller
        self.limit = limit
        self.id = secrets.token_urlsafe(12)  # names the stream to its own browser (``stop``)
        self.queue: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self.stopped = False
        self.wake = asyncio.Event()

    def offer(self, row: dict[str, Any]) -> None:
        if not may_read_row(self.caller, row):
            return
        if len(self.queue) >= self.limit:
            self.dropped += 1
        else:
            self.queue.append(row)
        self.wake.set()

    async def batch(self, timeout: float) -> list[dict[str, Any]]:
        """The rows waiting (then a ``dropped`` marker when some were lost); [] after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self.wake.wait(), timeout)
        except TimeoutError:
            return []
        self.wake.clear()
        out = list(self.queue)
        self.queue.clear()
        if self.dropped:
            out.append({"dropped": self.dropped})
            self.dropped = 0
        return out


class LiveTail:
    def __init__(self, limit: int = QUEUE_LIMIT, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self.subscribers: list[Subscriber] = []
        self.limit = limit
        self.max_subscribers = max_subscribers

    def check_room(self) -> None:
        if len(self.subscribers) >= self.max_subscribers:
            raise TooManyTails(f"{self.max_subscribers} live tails are open already; close one")

    def stop(self, ident: str, caller: Caller) -> bool:
        """End the caller's stream ``ident`` from the server side (its browser asked): the stream sends
        ``event: end`` and completes, so the browser closes it without aborting a request."""
        for sub in self.subscribers:
            if sub.id == ident and sub.caller.id == caller.id:
                sub.stopped = True
                sub.wake.set()
                return True
        return False

    @contextmanager
    def subscribe(self, caller: Caller) -> Iterator[Subscriber]:
        self.check_room()
        sub = Subscriber(caller, self.limit)
        self.subscribers.append(sub)
        try:
            yield sub
        finally:
            self.subscribers.remove(sub)

    def publish(self, gw: Gateway, ctx: RequestContext) -> None:
        """Called by the accounting stage, only while ``subscribers`` is not empty."""
        row = row_of(gw, ctx)
        if row is not None:
            for sub in self.subscribers:
                sub.offer(row)


def row_of(gw: Gateway, ctx: RequestContext) -> dict[str, Any] | None:
    """The request as the logs page shows a row (the fields of its spend record), or None when the request
    leaves no spend record (refused before a deployment was chosen, or no governance)."""
    if ctx.grant is None or (ctx.deployment is None and ctx.cache_hit is None and ctx.guardrails is None):
        return None
    from ...governance.types import Principal

    p = ctx.principal
    api_key: str | None
    user_id: str | None
    team_id: str | None
    alias: str | None
    if isinstance(p, Principal):
        key = p.key
        api_key, user_id, team_id, alias = key.token_hash, key.user_id, key.team_id, key.key_alias
    else:
        api_key, user_id, team_id, alias = getattr(gw.governance, "master_hash", None), None, None, None
    usage = ctx.usage or {}
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    elapsed = time.perf_counter() - ctx.started
    end = datetime.now(UTC)
    dep = ctx.deployment
    return {
        "request_id": ctx.request_id, "start_time": (end - timedelta(seconds=elapsed)).isoformat(),
        "end_time": end.isoformat(), "api_key": api_key, "key_alias": alias, "user_id": user_id,
        "team_id": team_id, "model_group": ctx.model, "model": dep.model if dep else None,
        "provider": ctx.provider.name if ctx.provider else ("cache" if ctx.cache_hit is not None else None),
        "route": ctx.route, "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion, "spend": ctx.grant.cost, "status": ctx.status or 500,
        "latency_ms": round(elapsed * 1000, 1), "stream": ctx.stream,
        "ttft_ms": round((ctx.first_token_at - ctx.started) * 1000, 1) if ctx.first_token_at else None,
    }


async def sse(sub: Subscriber, heartbeat: float = HEARTBEAT_SECONDS) -> AsyncIterator[bytes]:
    """The subscriber's rows as server-sent events (``event: hello`` with the stream's id first, then
    ``event: row`` / ``event: dropped``), a comment line as a heartbeat when nothing happened for
    ``heartbeat`` seconds, ``event: end`` once stopped."""
    yield b"retry: 3000\nevent: hello\ndata: " + orjson.dumps({"id": sub.id}) + b"\n\n"
    while True:
        rows = await sub.batch(heartbeat)
        if sub.stopped:
            yield b"event: end\ndata: {}\n\n"
            return
        if not rows:
            yield b": heartbeat\n\n"
            continue
        out = bytearray()
        for row in rows:
            kind = b"dropped" if "dropped" in row and len(row) == 1 else b"row"
            out += b"event: " + kind + b"\ndata: " + orjson.dumps(row) + b"\n\n"
        yield bytes(out)


def tail_of(gw: Gateway) -> LiveTail:
    """The gateway's live tail, kept on its accounting stage (created when the first tail opens)."""
    from ...stages.accounting import Accounting

    stage = next(s for s in gw.after_stages if isinstance(s, Accounting))
    if stage.tail is None:
        stage.tail = LiveTail()
    return stage.tail
