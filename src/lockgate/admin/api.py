"""The management API's ASGI app: find the route, authenticate, read and validate the input, run the
handler, answer JSON (see the package docstring).

Each route module ends with a ``ROUTES`` tuple of ``call.Route``.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec
import orjson

from ..errors import LockgateError
from ..http import Receive, Scope, Send, read_body, send_bytes
from . import alerts, cache, docs, entities, guardrails, keys, spend
from .auth import Caller, authenticate
from .call import Call, Route
from .schemas import decode, problem, query

if TYPE_CHECKING:
    from ..gateway import Gateway

log = logging.getLogger("lockgate.admin")


def all_routes() -> tuple[Route, ...]:
    return (*keys.ROUTES, *entities.ROUTES, *spend.ROUTES, *cache.ROUTES, *guardrails.ROUTES, *alerts.ROUTES)


def _default(value: object) -> object:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


def error_body(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code or str(status)}})


class AdminApp:
    """ASGI: route -> authenticate (401 before any body is read) -> body (bounded) or query -> handler."""

    def __init__(self, gateway: Gateway, body_limit: int) -> None:
        self.gateway = gateway
        self.body_limit = body_limit
        self.all = all_routes()
        self.routes: dict[str, dict[str, Route]] = {}
        for route in self.all:
            self.routes.setdefault(route.path, {})[route.method] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        methods = self.routes.get(path)
        if methods is None:
            if not await docs.serve(self.all, path, method, send):
                await self._answer(send, 404, error_body(404, f"no route {method} {path}", "not_found_error"))
            return
        route = methods.get(method)
        if route is None:
            await self._answer(send, 405, error_body(405, f"no route {method} {path}", "invalid_request_error"))
            return
        call = Call.of(self.gateway, scope)
        extra: dict[str, str] = {}
        try:
            caller = await authenticate(self.gateway, call.headers, path)  # roles are checked by each route
            result = await self._run(route, call, caller, scope, receive)
            body, status = orjson.dumps(result, default=_default, option=orjson.OPT_NON_STR_KEYS), 200
        except LockgateError as err:
            body, status, extra = error_body(err.status, err.message, err.type, err.param, err.code), err.status, \
                err.headers
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            field, message = problem(exc)
            body, status = error_body(400, message, "invalid_request_error", field), 400
        except Exception as exc:  # the store failing, ...: the management API's own 500, no traceback to the caller
            log.error("management API error on %s", path, exc_info=exc)
            body, status = error_body(500, "internal error in the management API", "api_error"), 500
        await self._answer(send, status, body, extra)

    async def _run(self, route: Route, call: Call, caller: Caller, scope: Scope, receive: Receive) -> dict[str, Any]:
        if route.body is not None:
            raw = await read_body(receive, self.body_limit, call.headers.get("content-length"))
            return await route.handler(call, caller, decode(route.body, raw))
        if route.query is not None:
            params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
            return await route.handler(call, caller, query(route.query, params))
        return await route.handler(call, caller)

    @staticmethod
    async def _answer(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send_bytes(send, status, body, extra)
