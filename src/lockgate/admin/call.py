"""What a management route is, and what its handler is given.

A handler is ``handler(call, caller)`` or ``handler(call, caller, args)``, where ``args`` is the route's
validated body (``body``) or query string (``query``), and returns the answer's JSON object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import LockgateError
from .schemas import Body, Query

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..state.store import SQLStore

Handler = Callable[..., Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    tag: str
    body: type[Body] | None = None
    query: type[Query] | None = None


@dataclass(frozen=True)
class Call:
    """One management request, as the handlers see it."""

    gateway: Gateway
    method: str
    path: str
    headers: dict[str, str]
    client: str | None

    @classmethod
    def of(cls, gateway: Gateway, scope: Mapping[str, Any]) -> Call:
        """The call of an ASGI request (the admin UI's pages run the management handlers too)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        return cls(gateway, scope["method"], scope["path"], headers, client[0] if client else None)

    @property
    def store(self) -> SQLStore:
        store = self.gateway.store
        if store is None:  # the gateway always opens one (SQLite by default); only a test's bare gateway lacks it
            raise LockgateError("the management API has no database", status=503, code="no_database")
        return store
