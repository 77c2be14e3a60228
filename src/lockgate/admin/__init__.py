"""The management API (LiteLLM Proxy's paths and field names), a FastAPI app off the hot path.

``app.py`` dispatches the paths in ``PREFIXES`` to the app built by ``load(gateway)``; the proxy
routes stay raw ASGI.  Errors use the OpenAI error shape (``{"error": {message, type, param,
code}}``); validation failures answer 400 naming the field.

FastAPI, pydantic and the schemas (about 0.7 s of imports and 30 MB) load on the first management
call, in a worker thread so the event loop keeps serving model requests meanwhile: a gateway that
only serves model traffic never pays for them.
"""

from __future__ import annotations

import asyncio
from typing import Any

PREFIXES = ("/key/", "/team/", "/user/", "/organization/", "/customer/", "/spend/", "/global/", "/audit/",
            "/docs/")
EXACT = ("/docs", "/openapi.json")


def handles(path: str) -> bool:
    return path.startswith(PREFIXES) or path in EXACT


def create_admin_app(gateway: Any) -> Any:
    from .api import create_admin_app as build

    return build(gateway)


async def load(gateway: Any) -> Any:
    """Import the management API off the event loop, then build it."""
    import importlib

    await asyncio.to_thread(importlib.import_module, "lockgate.admin.api")
    return create_admin_app(gateway)
