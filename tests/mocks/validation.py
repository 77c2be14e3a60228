"""Malformed input answered as the real APIs answer it: a 400 in the provider's error shape.

The real providers validate every field of a request and refuse a wrong type with a 400; the
mocks read only what they need.  ``rejects_malformed(render)`` is an aiohttp middleware: a handler
that trips over a field of the wrong type (``AttributeError``, ``TypeError``, ``KeyError``,
``ValueError``) answers ``render(message)`` (status 400) instead of aiohttp's plain-text 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rejects_malformed(render: Callable[[str], web.StreamResponse]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            return render(f"Invalid request: a field has the wrong type ({type(exc).__name__})")

    return middleware
