"""Raw ASGI plumbing: read a body, send a JSON answer, stream events.

The proxy routes stay on raw ASGI (no framework): it is the cheapest path
under uvicorn, measured in docs/performance.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .errors import RequestTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = (b"content-type", b"application/json")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def read_body(receive: Receive, limit: int, content_length: str | None = None) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before anything is read; otherwise
    the size is counted while the chunks arrive, so a large body is never buffered whole.
    """
    # a declared length of 6 digits or more (100 KB+) is checked before anything is read; shorter ones
    # skip the int() on the hot path (the count below still enforces any limit)
    if content_length is not None and len(content_length) > 5 and content_length.isdigit() \
            and int(content_length) > limit:
        raise _too_large(limit)
    message = await receive()
    body = message.get("body", b"")
    if len(body) > limit:
        raise _too_large(limit)
    if not message.get("more_body"):
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"request body exceeds the gateway's limit of {_megabytes(limit)} "
                           "(general_settings.max_request_size_mb)")


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


async def send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], content_type: tuple[bytes, bytes] = JSON
) -> None:
    # a content-length (not chunked framing) lets the server write the whole answer at once
    await send({"type": "http.response.start", "status": status,
                "headers": [content_type, (b"content-length", b"%d" % len(body)), *headers]})
    await send({"type": "http.response.body", "body": body})


async def stream_events(
    send: Send,
    receive: Receive,
    status: int,
    headers: list[tuple[bytes, bytes]],
    events: AsyncIterator[bytes],
    before_end: Callable[[], Awaitable[None] | None] | None = None,
) -> bool:
    """Send ``events`` as they come; stop at once when the client goes away.

    Returns False when the client disconnected.  The event iterator is closed
    in every case, which closes the upstream request behind it.
    """
    await send({"type": "http.response.start", "status": status, "headers": [*SSE_HEADERS, *headers]})
    state = _StreamState(asyncio.current_task())
    watcher = asyncio.ensure_future(_wait_disconnect(receive, state))
    watcher.add_done_callback(state.client_left)
    try:
        async for data in events:
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
        state.done = True
        if before_end is not None:
            pending = before_end()  # e.g. the spend journal: written before the client sees the end
            if pending is not None:
                await pending  # shared counters settled (and, with Redis, the spend record carried)
        await send({"type": "http.response.body", "body": b""})
        return True
    except asyncio.CancelledError:
        if state.ending is not None:  # the shutdown deadline (shutdown.py): its error event ends the stream
            state.task.uncancel()
            await events.aclose()  # type: ignore[attr-defined]  # the usage read so far, before the journal
            await send({"type": "http.response.body", "body": state.ending, "more_body": True})
            state.done = True
            if before_end is not None and (pending := before_end()) is not None:
                await pending
            await send({"type": "http.response.body", "body": b""})
            return True
        if not state.disconnected:
            raise
        state.task.uncancel()  # our own cancellation: the client went away
        return False
    finally:
        state.done = True
        watcher.cancel()
        await events.aclose()  # type: ignore[attr-defined]


class _StreamState:
    """Cancels the streaming task when the client disconnects (one watcher task, no polling); or, at
    the shutdown deadline, ends the stream with an error event (``end``)."""

    __slots__ = ("disconnected", "done", "ending", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        assert task is not None
        self.task = task
        self.done = False
        self.disconnected = False
        self.ending: bytes | None = None

    def client_left(self, watcher: asyncio.Future[None]) -> None:
        if not self.done and self.ending is None and not watcher.cancelled():
            self.disconnected = True
            self.task.cancel()

    def end(self, event: bytes) -> bool:
        """Stop the stream where it waits and send ``event`` (an error in the client's dialect) as its last
        event; the spend is journaled as for any stream that ends with an error.  False: it had ended."""
        if self.done or self.disconnected or self.ending is not None:
            return False
        self.ending = event
        self.task.cancel()
        return True


async def _wait_disconnect(receive: Receive, state: _StreamState) -> None:  # state: found by open_streams()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def open_streams() -> list[_StreamState]:
    """The streams this event loop is sending (found through their disconnect watchers; used at shutdown,
    so nothing is registered per request)."""
    found = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        if getattr(coro, "cr_code", None) is _wait_disconnect.__code__ and not task.done():
            state = coro.cr_frame.f_locals.get("state")  # type: ignore[union-attr]
            if isinstance(state, _StreamState) and not state.done:
                found.append(state)
    return found
