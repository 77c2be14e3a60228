"""One error tree for the whole gateway.

Every failure a client can see is a ``LockgateError``: it carries the HTTP
status, an OpenAI-style error ``type`` and ``code``, a message that never holds
secrets, and optional extra response headers (``Retry-After``).  Each dialect
renders it in its own JSON shape (see ``dialects.*.error_body``).
"""

from __future__ import annotations

import orjson


class LockgateError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}
        # short label for metrics and access logs ("bad_request", "upstream_5xx", ...)
        self.kind = kind or self.default_kind()

    def default_kind(self) -> str:
        return type_to_kind(self.type)


class BadRequest(LockgateError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(LockgateError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(LockgateError):
    status = 403
    type = "permission_error"


class NotFound(LockgateError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"


class RateLimited(LockgateError):
    status = 429
    type = "rate_limit_error"


class BudgetExceeded(LockgateError):
    """A budget (key, user, team, organization, end user, per-model, proxy) is spent: 429, as OpenAI's quota error."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def default_kind(self) -> str:
        return "budget"


class RequestTooLarge(LockgateError):
    """The client's body is over ``general_settings.max_request_size_mb``."""

    status = 413
    type = "invalid_request_error"  # Anthropic's shape says request_too_large (from the status)
    code = "request_too_large"

    def default_kind(self) -> str:
        return "bad_request"


class UpstreamError(LockgateError):
    """The provider failed: a 4xx keeps its status, a 5xx is a 502 (``upstream_status`` keeps the provider's)."""

    type = "api_error"
    upstream_status: int | None = None  # the provider's own status, when it answered one

    def default_kind(self) -> str:
        return "upstream_4xx" if 400 <= self.status < 500 else "upstream_5xx"


class ResponseTooLarge(UpstreamError):
    """The provider's answer (or one stream event) is over ``general_settings.max_response_size_mb``."""

    status = 502
    code = "upstream_response_too_large"


class UpstreamUnreachable(LockgateError):
    status = 502
    type = "api_error"
    code = "upstream_unreachable"

    def default_kind(self) -> str:
        return "upstream_unreachable"


class UpstreamTimeout(LockgateError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"

    def default_kind(self) -> str:
        return "upstream_timeout"


_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def type_for_status(status: int) -> str:
    return _STATUS_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def type_to_kind(type_: str) -> str:
    return {
        "invalid_request_error": "bad_request",
        "authentication_error": "auth",
        "permission_error": "permission",
        "not_found_error": "not_found",
        "rate_limit_error": "rate_limit",
        "timeout_error": "timeout",
    }.get(type_, "internal")


# ---------------------------------------------------------------- error bodies of each wire format

def is_error_body(shape: str, body: bytes) -> bool:
    """True when ``body`` is an error JSON of the wire format ``shape`` (``openai``, ``anthropic``,
    ``google``): what may be relayed to a client of that format as it came.  Only error answers
    are checked, so this parse is never on the path of a successful request."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict):
        return False
    err = data.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return False
    if shape == "anthropic":
        return data.get("type") == "error" and isinstance(err.get("type"), str)
    if shape == "google":
        return isinstance(err.get("code"), int) and isinstance(err.get("status", ""), str)
    return isinstance(err.get("type", ""), (str, type(None))) and isinstance(err.get("code", ""), (str, int, type(None)))


def describe_body(body: bytes, content_type: str | None) -> str:
    """A few words about a body that is not an error JSON, without echoing it (it may hold anything)."""
    if not body.strip():
        return "an empty body"
    kind = (content_type or "").split(";", 1)[0].strip() or "untyped"
    return f"a {kind} body that is not an error JSON ({len(body)} bytes)"
