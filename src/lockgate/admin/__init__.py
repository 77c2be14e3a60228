"""The management API (LiteLLM Proxy's paths and field names), a FastAPI app off the hot path.

``app.py`` dispatches the paths in ``PREFIXES`` to the app built by ``load(gateway)``; the proxy
routes stay raw ASGI.  Errors use the OpenAI error shape (``{"error": {message, type, param,
code}}``); validation failures answer 400 naming the field.

FastAPI, pydantic and the schemas (about 0.4 s of imports and 20 MB; redis is not among them) load on
the first management call, in a worker thread so the event loop keeps serving model requests meanwhile:
a gateway that only serves model traffic never pays for them.

A request with a body is let in by ``BodyGate``: the caller is authenticated from the headers first
(an unknown caller gets 401 and its body is never read), then the body is read, at most
``MAX_BODY`` bytes (413 beyond, or at once from ``Content-Length``), and handed to FastAPI.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from ..errors import LockgateError
from ..http import Receive, Scope, Send, read_body, send_bytes

PREFIXES = ("/key/", "/team/", "/user/", "/organization/", "/customer/", "/spend/", "/global/", "/audit/",
            "/docs/", "/cache/", "/guardrails/")
EXACT = ("/docs", "/openapi.json", "/health/services")
# management bodies are small (a key, a team, a list of members): 1 MB, or less when
# general_settings.max_request_size_mb is smaller
MAX_BODY = 1024 * 1024
BODYLESS = ("GET", "HEAD", "OPTIONS")


def handles(path: str) -> bool:
    return path.startswith(PREFIXES) or path in EXACT


def create_admin_app(gateway: Any) -> Any:
    from .api import create_admin_app as build

    return BodyGate(build(gateway), gateway, min(MAX_BODY, gateway.settings.max_request_body))


class BodyGate:
    """ASGI in front of the management app: authenticate, then read the body (bounded), then serve."""

    def __init__(self, app: Any, gateway: Any, limit: int) -> None:
        self.app = app
        self.gateway = gateway
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODYLESS:
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        from .auth import authenticate

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            await authenticate(Request({**scope, "app": self.app}))  # roles are checked by each route
            body = await read_body(receive, self.limit, headers.get("content-length"))
        except LockgateError as err:
            await _error(send, err)
            return
        except Exception as exc:  # the store failing, ...: the management API's own 500, no traceback to the caller
            logging.getLogger("lockgate.admin").error("management API error on %s", scope["path"], exc_info=exc)
            await _error(send, LockgateError("internal error in the management API"))
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then whatever the connection says next."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _error(send: Send, err: LockgateError) -> None:
    body = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    headers = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send_bytes(send, err.status, orjson.dumps(body), headers)


async def load(gateway: Any) -> Any:
    """Import the management API off the event loop, then build it."""
    import importlib

    await asyncio.to_thread(importlib.import_module, "lockgate.admin.api")
    return create_admin_app(gateway)
