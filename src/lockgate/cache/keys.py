"""What a cached answer is filed under, and the per-request cache controls.

The key is a digest of the whole request body in a canonical form (keys sorted; minus transport-only
fields), the route, the model group the name resolved to and whether the answer is streamed, under the
tenant scope.  Every parameter that shapes the answer (``tools``, ``tool_choice``, ``response_format``,
``seed``, ``temperature``, ``max_tokens``, ``n``, provider extras, ...) is part of it: nothing is keyed on
an allow-list.  The scope comes from the authenticated principal only, never from the body.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import BadRequest, PermissionDenied
from ..governance.types import Principal

if TYPE_CHECKING:
    from ..context import RequestContext

# fields that never change the answer: how it travels, who asked, cache controls, tracing metadata
TRANSPORT_FIELDS = frozenset({
    "stream", "stream_options", "metadata", "litellm_metadata", "cache", "user", "safety_identifier",
    "prompt_cache_key", "fallbacks", "guardrails", "tags",
})
CONTROLS = ("no-cache", "no-store", "ttl", "s-maxage", "namespace", "use-cache")


def scope_of(ctx: RequestContext, kind: str) -> str:
    """``team``: the key's team, else the key; ``key``: the key; ``global``: everyone (opt-in)."""
    if kind == "global":
        return "global"
    principal = ctx.principal
    if isinstance(principal, Principal):
        key = principal.key
        if kind == "team" and key.team_id:
            return "team:" + key.team_id
        return "key:" + key.token_hash[:32]
    return "master" if principal == "master" else "anonymous"


def request_key(ctx: RequestContext, scope: str, namespace: str = "") -> str:
    """``<scope>/<sha256 hex>`` (with a request's own namespace: ``<scope>/<namespace>/<hex>``).  The body
    as the client sent it, before a guardrail masked it (two prompts masked alike are not one request)."""
    body = {k: v for k, v in (ctx.unmasked_body or ctx.body).items() if k not in TRANSPORT_FIELDS}
    material = orjson.dumps([ctx.route, ctx.model_group, ctx.stream, body], option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(material).hexdigest()
    return f"{scope}/{namespace}/{digest}" if namespace else f"{scope}/{digest}"


def item_key(ctx: RequestContext, scope: str, item: Any, namespace: str = "") -> str:
    """One embeddings input: the request minus ``input``, plus this item."""
    body = {k: v for k, v in (ctx.unmasked_body or ctx.body).items() if k not in TRANSPORT_FIELDS and k != "input"}
    material = orjson.dumps([ctx.route, ctx.model_group, body, item], option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(material).hexdigest()
    return f"{scope}/{namespace}/{digest}" if namespace else f"{scope}/{digest}"


@dataclass(slots=True)
class Controls:
    no_cache: bool = False  # skip the lookup (the fresh answer is still stored)
    no_store: bool = False  # do not store this answer
    use_cache: bool = False  # default_off mode: this request opts in
    ttl: float | None = None  # keep this answer that long
    s_maxage: float | None = None  # accept only an answer younger than this
    namespace: str = ""

    def named(self) -> list[str]:
        names = [n for n, on in (("no-cache", self.no_cache), ("no-store", self.no_store),
                                 ("use-cache", self.use_cache)) if on]
        names += [n for n, v in (("ttl", self.ttl), ("s-maxage", self.s_maxage)) if v is not None]
        return names + (["namespace"] if self.namespace else [])


def read_controls(ctx: RequestContext) -> Controls:
    """The body's ``cache: {...}`` and the ``Cache-Control`` request header (LiteLLM's semantics); a key
    with ``allowed_cache_controls`` may use only those (403 naming the first other one)."""
    controls = Controls()
    raw = ctx.body.get("cache")
    if raw is not None:
        if not isinstance(raw, dict):
            raise BadRequest("field 'cache' must be an object", param="cache")
        controls.no_cache = raw.get("no-cache") is True
        controls.no_store = raw.get("no-store") is True
        controls.use_cache = raw.get("use-cache") is True
        controls.ttl = _seconds(raw, "ttl")
        controls.s_maxage = _seconds(raw, "s-maxage")
        namespace = raw.get("namespace")
        if namespace is not None:
            if not isinstance(namespace, str) or not namespace or len(namespace) > 128 or "/" in namespace:
                raise BadRequest("cache.namespace must be a non-empty string of at most 128 characters without '/'",
                                 param="cache")
            controls.namespace = namespace
    header = ctx.headers.get("cache-control")
    if header:
        for part in header.lower().split(","):
            name, _, value = part.strip().partition("=")
            if name == "no-cache":
                controls.no_cache = True
            elif name == "no-store":
                controls.no_store = True
            elif name in ("s-maxage", "max-age") and value.strip().isdigit():
                controls.s_maxage = float(value)
    principal = ctx.principal
    if isinstance(principal, Principal):
        allowed = principal.key.allowed_cache_controls
        if allowed is not None:
            for name in controls.named():
                if name not in allowed:
                    raise PermissionDenied(f"this key may not use the cache control {name!r} "
                                           f"(allowed_cache_controls: {', '.join(allowed) or 'none'})")
    return controls


def _seconds(raw: dict[str, Any], name: str) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRequest(f"cache.{name} must be a number of seconds (0 or more)", param="cache")
    return float(value)
