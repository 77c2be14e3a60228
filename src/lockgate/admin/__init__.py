"""The management API (LiteLLM Proxy's paths and field names), a small ASGI app off the hot path.

``app.py`` dispatches the paths in ``PREFIXES`` to the app built by ``load(gateway)``; the proxy
routes stay raw ASGI.  Errors use the OpenAI error shape (``{"error": {message, type, param,
code}}``); validation failures answer 400 naming the field.

The app (``api.py``) finds the route, authenticates the caller from the headers (an unknown caller gets
401 and its body is never read), reads the body, at most ``MAX_BODY`` bytes (413 beyond, or at once from
``Content-Length``), validates it (or the query string) against the route's msgspec struct
(``schemas.py``) and runs the handler.  Its modules load on the first management call, in a worker thread
so the event loop keeps serving model requests meanwhile: a gateway that only serves model traffic never
pays for them, and one that does pays ~3 MB (no FastAPI or pydantic: docs/performance.md, session 11).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..gateway import Gateway
    from .api import AdminApp

PREFIXES = ("/key/", "/team/", "/user/", "/organization/", "/customer/", "/spend/", "/global/", "/audit/",
            "/docs/", "/cache/", "/guardrails/")
EXACT = ("/docs", "/openapi.json", "/health/services")
# management bodies are small (a key, a team, a list of members): 1 MB, or less when
# general_settings.max_request_size_mb is smaller
MAX_BODY = 1024 * 1024


def handles(path: str) -> bool:
    return path.startswith(PREFIXES) or path in EXACT


def create_admin_app(gateway: Gateway) -> AdminApp:
    from .api import AdminApp

    return AdminApp(gateway, min(MAX_BODY, gateway.settings.max_request_body))


async def load(gateway: Gateway) -> AdminApp:
    """Import the management API off the event loop, then build it."""
    import importlib

    await asyncio.to_thread(importlib.import_module, "lockgate.admin.api")
    return create_admin_app(gateway)
