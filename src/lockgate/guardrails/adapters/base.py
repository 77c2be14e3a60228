"""What every adapter shares: the checker protocol, the one failure (``AdapterUnavailable``), reading
typed params from ``litellm_params``, and one JSON call over the gateway's upstream client.

Nothing here logs or raises with the checked text, a credential or the service's answer body (which
may echo the text): failures name the service and the kind of failure only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import orjson

from ...errors import LockgateError
from ..config import GuardrailConfigError
from ..types import Action, Detection, Verdict

if TYPE_CHECKING:
    from ...transport.client import Upstream, UpstreamReply
    from ..config import GuardrailSpec

DEFAULT_TIMEOUT = 5.0  # seconds, litellm_params.timeout
ANSWER_LIMIT = 4 * 1024 * 1024  # a verdict is small; a bigger answer is refused unread
JSON = {"content-type": "application/json"}


class AdapterUnavailable(Exception):
    """The guardrail service gave no verdict (timeout, connection error, non-2xx, unreadable answer)."""


class AsyncChecker(Protocol):
    async def acheck(self, text: str, *, source: str) -> Verdict: ...


# ---------------------------------------------------------------- params


def where(spec: GuardrailSpec) -> str:
    return f"guardrail {spec.name!r} ({spec.type})"


def text_param(spec: GuardrailSpec, name: str) -> str | None:
    value = spec.params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise GuardrailConfigError(f"{where(spec)}: litellm_params.{name} must be a string")
    return value


def flag_param(spec: GuardrailSpec, name: str, default: bool) -> bool:
    value = spec.params.get(name, default)
    if not isinstance(value, bool):
        raise GuardrailConfigError(f"{where(spec)}: litellm_params.{name} must be true or false")
    return value


def mapping_param(spec: GuardrailSpec, name: str) -> dict[str, Any]:
    value = spec.params.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise GuardrailConfigError(f"{where(spec)}: litellm_params.{name} must be a mapping")
    return {str(k): v for k, v in value.items()}


def timeout_of(spec: GuardrailSpec) -> float:
    value = spec.params.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise GuardrailConfigError(f"{where(spec)}: litellm_params.timeout must be a positive number of seconds")
    return float(value)


def base_url(spec: GuardrailSpec, base: str) -> str:
    """A service's base URL, checked at start (an http(s) URL), without its trailing slash."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GuardrailConfigError(f"{where(spec)}: {base!r} is not an http(s) URL")
    return base.rstrip("/")


def joined(base: str, path: str) -> str:
    """``base`` + ``path`` unless the base already ends with it (LiteLLM accepts both forms)."""
    return base if base.endswith(path) else base + path


# ---------------------------------------------------------------- one call


async def post(http: Upstream, service: str, url: str, headers: dict[str, str], body: bytes,
               timeout: float) -> Any:
    """POST ``body``; the parsed JSON answer, or ``AdapterUnavailable``."""
    try:
        reply = await http.post(url, headers, body, timeout, limit=ANSWER_LIMIT)
    except (LockgateError, ValueError) as exc:  # timeout, unreachable, too large, a URL it cannot use
        kind = exc.code if isinstance(exc, LockgateError) and exc.code else type(exc).__name__
        raise AdapterUnavailable(f"{service}: {kind}") from None
    if not 200 <= reply.status < 300:
        raise AdapterUnavailable(f"{service} answered HTTP {reply.status}{error_name(reply)}")
    try:
        return orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        raise AdapterUnavailable(f"{service} answered with a body that is not JSON") from None


async def post_json(http: Upstream, service: str, url: str, headers: dict[str, str], payload: object,
                    timeout: float) -> Any:
    return await post(http, service, url, headers, orjson.dumps(payload), timeout)


def error_name(reply: UpstreamReply) -> str:
    """The error's name when the service gives one (AWS ``x-amzn-ErrorType``, OpenAI ``error.code`` /
    ``error.type``): an identifier, never the message (which may quote the request)."""
    headers = {k.lower(): v for k, v in reply.headers.items()}
    name: object = headers.get("x-amzn-errortype", "").split(":")[0]
    if not name:
        try:
            error = orjson.loads(reply.body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        if isinstance(error, dict):
            name = error.get("code") or error.get("type")
    if isinstance(name, str) and name and len(name) <= 64 and name.replace("_", "").replace("-", "").isalnum():
        return f" ({name})"
    return ""


def unreadable(service: str) -> AdapterUnavailable:
    return AdapterUnavailable(f"{service} answered in a shape the adapter cannot read")


def whole(text: str, kind: str, action: Action, score: float = 1.0) -> Detection:
    """A detection that covers the whole checked text (the service gave no offsets)."""
    return Detection(kind, 0, len(text), score, action)


def locate(text: str, match: object, cursors: dict[str, int]) -> tuple[int, int]:
    """Where a matched value the service reported sits in the text (whole text when not found); a value
    reported again is looked for after its previous place (``cursors``: value -> where to look next)."""
    if isinstance(match, str) and match:
        start = text.find(match, cursors.get(match, 0))
        if start < 0:
            start = text.find(match)
        if start >= 0:
            cursors[match] = start + len(match)
            return start, start + len(match)
    return 0, len(text)


def blocked_message(service: str, kinds: list[str]) -> str:
    names = ", ".join(dict.fromkeys(kinds))
    return f"flagged by {service}: {names}" if names else f"flagged by {service}"
