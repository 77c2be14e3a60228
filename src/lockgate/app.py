"""The ASGI application: lifespan, the route table and the front doors.

Proxy routes are plain ASGI callables (no framework on the hot path).  Every
path is served with and without the ``/v1`` prefix.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import orjson

from . import __version__, config, gemini_door, malloc, pipeline
from . import admin as admin_routes
from . import ui as ui_routes
from .context import RequestContext
from .dialects import anthropic_messages, openai_chat, openai_completions, openai_responses
from .errors import LockgateError, NotFound, PermissionDenied
from .gateway import Gateway
from .http import Receive, Scope, Send, read_body, send_bytes
from .shutdown import Drain, Readiness

log = logging.getLogger("lockgate")

Handler = Callable[[Gateway, Scope, Receive, Send], Awaitable[None]]

# path -> (dialect, route name) for model requests
MODEL_ROUTES: dict[str, tuple[Any, str]] = {
    "/chat/completions": (openai_chat, "chat"),
    "/embeddings": (openai_chat, "embeddings"),
    "/messages": (anthropic_messages, "messages"),
    "/messages/count_tokens": (anthropic_messages, "count_tokens"),
    "/responses": (openai_responses, "responses"),
    "/completions": (openai_completions, "completions"),
}


def headers_of(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def model_request(gw: Gateway, scope: Scope, receive: Receive, send: Send, dialect: Any, route: str) -> None:
    ctx = RequestContext(
        request_id=gw.new_request_id(),
        route=route,
        dialect=dialect,
        headers=headers_of(scope),
        client_ip=(scope.get("client") or (None,))[0],
    )
    try:
        raw = await read_body(receive, gw.settings.max_request_body, ctx.headers.get("content-length"))
    except LockgateError as err:
        await pipeline.respond_error(gw, ctx, send, err)
        return
    await pipeline.handle(gw, ctx, raw, send, receive)


async def list_models(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    ctx = await _authorized(gw, scope, send)
    if ctx is None:
        return
    names = [n for n in gw.groups if _may_use(gw, ctx, n)]  # a virtual key sees only what it may call
    if "anthropic-version" in headers_of(scope):  # the Anthropic SDK's models.list
        data = [{"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"} for n in names]
        body = {"data": data, "has_more": False, "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None}
    else:
        body = {"object": "list", "data": [_model_card(n) for n in names]}
    await send_bytes(send, 200, orjson.dumps(body), [])


async def get_model(gw: Gateway, scope: Scope, receive: Receive, send: Send, model_id: str) -> None:
    ctx = await _authorized(gw, scope, send)
    if ctx is None:
        return
    if model_id not in gw.groups or not _may_use(gw, ctx, model_id):
        err = NotFound(f"model {model_id!r} is not served by this gateway")
        await send_bytes(send, 404, orjson.dumps(openai_chat.error_body(err)), [])
        return
    await send_bytes(send, 200, orjson.dumps(_model_card(model_id)), [])


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "lockgate"}


async def _authorized(gw: Gateway, scope: Scope, send: Send) -> RequestContext | None:
    ctx = RequestContext(request_id=gw.new_request_id(), route="models", dialect=openai_chat, headers=headers_of(scope))
    if "anthropic-version" in ctx.headers:
        ctx.dialect = anthropic_messages
    try:
        await pipeline.authenticate(gw, ctx)
    except LockgateError as err:
        await pipeline.respond_error(gw, ctx, send, err)
        return None
    return ctx


def _may_use(gw: Gateway, ctx: RequestContext, model: str) -> bool:
    """The effective model access of a virtual key (key ∩ user ∩ team ∩ organization)."""
    if gw.governance is None:
        return True
    return gw.governance.may_use(ctx.principal, model)


# user roles that may run GET /health (the master key may too): it calls every deployment
HEALTH_ROLES = ("proxy_admin", "proxy_admin_viewer")


async def health(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Check every deployment with a minimal request (admin only: it costs provider calls)."""
    ctx = await _authorized(gw, scope, send)
    if ctx is None:
        return
    try:
        _require_health_role(ctx.principal)
    except LockgateError as err:
        await pipeline.respond_error(gw, ctx, send, err)
        return
    assert gw.health is not None
    await send_bytes(send, 200, orjson.dumps(await gw.health.check_all()), [])


def _require_health_role(principal: Any, what: str = "GET /health calls every deployment: it") -> None:
    """The master key (or an open gateway), or a usable key of a proxy_admin / proxy_admin_viewer user."""
    if principal in ("master", "anonymous"):
        return
    from datetime import datetime

    from .governance import policy
    from .governance.types import Principal

    if isinstance(principal, Principal):
        policy.check_key_state(principal, datetime.now(UTC))
        if principal.user is not None and principal.user.role in HEALTH_ROLES:
            return
    raise PermissionDenied(f"{what} needs the master key or the key of a "
                           "proxy_admin or proxy_admin_viewer user", code="forbidden")


async def liveliness(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await send_bytes(send, 200, b'"I\'m alive!"', [])


async def readiness(probe: Readiness, send: Send) -> None:
    """503 while draining (shutdown.py) or when the database or Redis does not answer (checks cached ~1 s)."""
    status, body = await probe.answer()
    await send_bytes(send, status, orjson.dumps(body), [])


async def model_info(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """LiteLLM's /model/info: deployments, non-secret parameters, prices (governance/model_info.py)."""
    ctx = await _authorized(gw, scope, send)
    if ctx is None:
        return
    from urllib.parse import parse_qs

    from .governance import model_info as info

    wanted = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("litellm_model_id", [None])[0]
    body = info.body(gw.groups, lambda name: _may_use(gw, ctx, name), wanted)
    await send_bytes(send, 200, orjson.dumps(body), [])


async def metrics(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Prometheus metrics; with ``litellm_settings.require_auth_for_metrics_endpoint`` only for the master
    key or an admin's key (as GET /health): 401 / 403 otherwise (docs/metrics.md)."""
    from .observability.state_metrics import scrape

    if gw.settings.require_auth_for_metrics:
        ctx = await _authorized(gw, scope, send)
        if ctx is None:
            return
        try:
            _require_health_role(ctx.principal, "GET /metrics")
        except LockgateError as err:
            await pipeline.respond_error(gw, ctx, send, err)
            return
    await send_bytes(send, 200, await scrape(gw), [], (b"content-type", b"text/plain; version=0.0.4"))


OTHER_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/models"): list_models,
    ("GET", "/health"): health,
    ("GET", "/health/liveliness"): liveliness,
    ("GET", "/health/liveness"): liveliness,
    ("GET", "/metrics"): metrics,
    ("GET", "/model/info"): model_info,
}


class App:
    """The ASGI callable.  Builds the ``Gateway`` at lifespan start-up."""

    def __init__(self, settings: config.Settings | None = None, config_path: str | None = None) -> None:
        self._settings = settings
        self._config_path = config_path
        self.gateway: Gateway | None = None
        self.admin: Any = None  # the management API (FastAPI), built on its first call
        self.ui: Any = None  # the admin UI (ui/), built on its first request
        self.sso: Any = None  # OpenID Connect sign-in (auth/oidc.py: /sso/*), built on its first request
        self._admin_lock: asyncio.Lock | None = None
        self.readiness: Readiness | None = None  # GET /health/readiness, and the draining flag (shutdown.py)
        self.drain: Drain | None = None  # SIGTERM / SIGINT taken over from uvicorn at start-up

    def start(self) -> Gateway:
        settings = self._settings or config.load(self._config_path or os.environ["LOCKGATE_CONFIG"])
        for warning in settings.warnings:
            log.warning("config: %s", warning)
        if settings.master_key is None:
            log.warning("no general_settings.master_key: every request is accepted without a key")
        self.gateway = Gateway(settings)
        self.readiness = Readiness(self.gateway)
        gc.collect()
        gc.freeze()  # start-up objects are long-lived: keep them out of collections
        gc.set_threshold(100_000, 50, 100)
        return self.gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    started = time.perf_counter()
                    gateway = self.start()
                    await gateway.start()
                    if gateway.settings.ui and os.environ.get("UI_USERNAME"):  # the UI's first admin (docs/ui.md)
                        await ui_routes.first_admin(gateway)
                    if gateway.tracing is not None:  # prompt / answer on spans: opted in, never when turned off
                        gateway.tracing.content = (gateway.settings.otel_export_content
                                                   and not gateway.settings.turn_off_message_logging)
                    assert self.readiness is not None
                    self.drain = Drain.install(self.readiness)
                    log.info("lockgate %s ready in %.0f ms", __version__, (time.perf_counter() - started) * 1000)
                except Exception as exc:  # noqa: BLE001
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.gateway:
                    await self.gateway.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway or self.start()
        path = scope["path"]
        if path.startswith("/v1/"):
            path = path[3:]
        method = scope["method"]
        if method == "POST" and path in MODEL_ROUTES:
            dialect, route = MODEL_ROUTES[path]
            await model_request(gw, scope, receive, send, dialect, route)
            return
        handler = OTHER_ROUTES.get((method, path))
        if handler is not None:
            await handler(gw, scope, receive, send)
        elif method == "GET" and path == "/health/readiness":
            assert self.readiness is not None
            await readiness(self.readiness, send)
        elif method == "GET" and path.startswith("/models/"):
            await get_model(gw, scope, receive, send, path[len("/models/"):])
        elif method == "POST" and (spec := gemini_door.match(path)):
            await gemini_door.handle(gw, scope, receive, send, *spec)
        elif gw.settings.ui and ui_routes.handles(path):
            ui = self.ui or await self._load_ui(gw)
            await ui(scope, receive, send)
        elif path.startswith("/sso/") and gw.settings.sso is not None:  # docs/sso.md
            if self.sso is None:
                from .auth.oidc import SSO

                self.sso = SSO(gw)
            await self.sso(scope, receive, send)
        elif admin_routes.handles(path):
            admin = self.admin or await self._load_admin(gw)
            await admin(scope if path == scope["path"] else {**scope, "path": path}, receive, send)
        else:
            await _not_found(send, method, scope["path"])


    async def _load_admin(self, gw: Gateway) -> Any:
        if self._admin_lock is None:
            self._admin_lock = asyncio.Lock()
        async with self._admin_lock:
            if self.admin is None:
                self.admin = await admin_routes.load(gw)
        return self.admin

    async def _load_ui(self, gw: Gateway) -> Any:
        if self._admin_lock is None:
            self._admin_lock = asyncio.Lock()
        async with self._admin_lock:
            if self.ui is None:
                self.ui = await ui_routes.load(gw)
        return self.ui


async def _not_found(send: Send, method: str, path: str) -> None:
    body = {"error": {"message": f"no route {method} {path}", "type": "not_found_error", "param": None, "code": None}}
    await send_bytes(send, 404, orjson.dumps(body), [])


def create_app() -> App:
    """Factory for ``uvicorn --factory`` and worker processes (reads LOCKGATE_CONFIG)."""
    malloc.one_arena()  # before the serving threads start (malloc.py)
    return App(config_path=os.environ.get("LOCKGATE_CONFIG"))
