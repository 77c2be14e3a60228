"""The management API's FastAPI app: routers, error handlers (see the package docstring)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import LockgateError
from . import alerts, cache, entities, guardrails, keys, spend


def _error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code or str(status)}}
    return JSONResponse(body, status_code=status, headers=headers)


DOC_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css")


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the assets bundled in ``swagger-ui-bundle-v2`` (no CDN: works offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from starlette.responses import FileResponse, HTMLResponse
    from swagger_ui_bundle import swagger_ui_path

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Lockgate management API",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css", swagger_favicon_url="")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in DOC_ASSETS:
            raise HTTPException(404)
        return FileResponse(str(swagger_ui_path / name))


def create_admin_app(gateway: Any) -> FastAPI:
    app = FastAPI(title="Lockgate management API", version=__version__, docs_url=None,
                  openapi_url="/openapi.json", redoc_url=None)
    app.state.gateway = gateway
    for module in (keys, entities, spend, cache, guardrails, alerts):
        app.include_router(module.router)
    _offline_docs(app)

    @app.exception_handler(LockgateError)
    async def lockgate_error(request: Request, exc: LockgateError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.type, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query")]
        loc = [p for p in loc if "[" not in p and not p[:1].isupper()]  # drop union tags ("Member", "list[Member]")
        field = ".".join(loc) or "body"
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        if first.get("type") == "missing":
            text = f"missing required field '{field}'"
        elif first.get("type") == "json_invalid":
            text, field = "request body is not valid JSON", "body"
        else:
            text = f"field '{field}': {message}"
        return _error(400, text, "invalid_request_error", field)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return _error(exc.status_code, message, type_)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        import logging

        logging.getLogger("lockgate.admin").error("management API error on %s", request.url.path, exc_info=exc)
        return _error(500, "internal error in the management API", "api_error")

    return app
