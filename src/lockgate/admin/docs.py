"""The management API's own description: ``GET /openapi.json`` (OpenAPI 3.1, built from the routes and
their msgspec structs on first request) and Swagger UI at ``GET /docs`` from the assets bundled in
``swagger-ui-bundle-v2`` (``/docs/assets/*``: no CDN, works offline).  None of it needs a key, as
LiteLLM's own ``/docs``."""

from __future__ import annotations

import asyncio
import html
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from .. import __version__
from ..http import Send, send_bytes

if TYPE_CHECKING:
    from .call import Route

TITLE = "Lockgate management API"
ASSETS = {"swagger-ui-bundle.js": b"text/javascript; charset=utf-8", "swagger-ui.css": b"text/css; charset=utf-8"}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"}});
</script></body></html>
"""


async def serve(routes: tuple[Route, ...], path: str, method: str, send: Send) -> bool:
    """Answer ``path`` if it is one of the documentation paths (False otherwise)."""
    if method not in ("GET", "HEAD"):
        return False
    if path == "/openapi.json":
        await send_bytes(send, 200, orjson.dumps(openapi(routes)), [])
    elif path == "/docs":
        await send_bytes(send, 200, PAGE.format(title=html.escape(TITLE)).encode(), [],
                         (b"content-type", b"text/html; charset=utf-8"))
    elif path.startswith("/docs/assets/") and path.removeprefix("/docs/assets/") in ASSETS:
        from swagger_ui_bundle import swagger_ui_path

        name = path.removeprefix("/docs/assets/")
        data = await asyncio.to_thread((swagger_ui_path / name).read_bytes)
        await send_bytes(send, 200, data, [], (b"content-type", ASSETS[name]))
    else:
        return False
    return True


def openapi(routes: tuple[Route, ...]) -> dict[str, Any]:
    bodies = sorted({r.body for r in routes if r.body is not None}, key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(bodies, ref_template="#/components/schemas/{name}")
    ref_of = dict(zip(bodies, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        summary, _, description = (route.handler.__doc__ or "").strip().partition("\n")
        operation: dict[str, Any] = {"tags": [route.tag], "operationId": route.handler.__name__,
                                     "summary": summary or route.path,
                                     "responses": {"200": {"description": "OK"},
                                                   "default": {"description": "an error: {error: {message, type, "
                                                                              "param, code}}"}}}
        if description.strip():
            operation["description"] = description.strip()
        if route.body is not None:
            operation["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": ref_of[route.body]}}}
        if route.query is not None:
            _, defs = msgspec.json.schema_components([route.query])
            schema = defs[route.query.__name__]
            required = set(schema.get("required", ()))
            operation["parameters"] = [{"name": name, "in": "query", "required": name in required, "schema": spec}
                                       for name, spec in schema.get("properties", {}).items()]
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {"openapi": "3.1.0", "info": {"title": TITLE, "version": __version__}, "paths": paths,
            "components": {"schemas": components,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}]}
