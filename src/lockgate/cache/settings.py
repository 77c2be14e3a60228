"""``litellm_settings.cache`` / ``cache_params`` (LiteLLM's names) as typed settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# LiteLLM's call types -> the routes they cover here
CALL_TYPES: dict[str, tuple[str, ...]] = {
    "completion": ("chat", "messages", "generate"), "acompletion": ("chat", "messages", "generate"),
    "anthropic_messages": ("messages",), "generate_content": ("generate",), "agenerate_content": ("generate",),
    "text_completion": ("completions",), "atext_completion": ("completions",),
    "embedding": ("embeddings",), "aembedding": ("embeddings",),
    "responses": ("responses",), "aresponses": ("responses",),
    "transcription": (), "atranscription": (), "rerank": (), "arerank": (),
}
ALL_ROUTES = frozenset({"chat", "messages", "generate", "completions", "embeddings", "responses"})
TYPES = ("local", "redis", "local-semantic", "redis-semantic", "qdrant-semantic")
KNOWN_PARAMS = {
    "type", "ttl", "namespace", "mode", "supported_call_types", "host", "port", "password", "username",
    "redis_url", "scope", "max_size_mb", "similarity_threshold", "max_turns", "embedding_model",
    "redis_semantic_cache_embedding_model", "qdrant_semantic_cache_embedding_model", "embed_timeout_s",
    "max_entries_per_scope", "qdrant_api_base", "qdrant_api_key", "qdrant_collection_name", "qdrant_quantization_config",
    "redis_semantic_cache_use_async", "default_in_memory_ttl", "default_in_redis_ttl",
}


class CacheConfigError(ValueError):
    pass


@dataclass
class CacheSettings:
    type: str = "local"  # local | redis | local-semantic | redis-semantic (qdrant-semantic: redis-semantic
    # when a Redis is configured, else local-semantic)
    ttl: float = 3600.0  # seconds an answer is kept (a request's cache.ttl may change it)
    namespace: str = ""  # Redis keys: <namespace:>lockgate:cache:<scope>/<digest>
    mode: str = "default_on"  # default_on: every request; default_off: only requests with cache: {use-cache: true}
    routes: frozenset[str] = ALL_ROUTES  # from supported_call_types
    scope: str = "team"  # team (the key's team, else the key) | key | global
    max_bytes: int = 64 * 1024 * 1024  # local: bytes held (max_size_mb)
    redis_url: str | None = field(default=None, repr=False)  # cache_params host/port/password/redis_url, else the gateway's
    semantic: bool = False
    similarity_threshold: float = 0.95
    max_turns: int = 4  # longer conversations are never semantically matched
    embedding_model: str | None = None  # a model group of the config (an embedding deployment), else the local model
    embed_timeout_s: float = 0.5
    max_entries_per_scope: int = 10_000

    @property
    def shared(self) -> bool:
        return self.redis_url is not None


def parse(enabled: Any, params: Any, gateway_redis: str | None, warnings: list[str]) -> CacheSettings | None:
    """``litellm_settings.cache`` (true/false) and ``cache_params``; None when the cache is off."""
    if not enabled:
        return None
    params = params if isinstance(params, dict) else {}
    for name in params:
        if name not in KNOWN_PARAMS:
            warnings.append(f"litellm_settings.cache_params.{name} is not implemented yet (ignored)")
    kind = str(params.get("type") or "local")
    if kind not in TYPES:
        raise CacheConfigError(f"litellm_settings.cache_params.type: {kind!r} is not one of {', '.join(TYPES)}")
    if kind == "qdrant-semantic":
        warnings.append("litellm_settings.cache_params.type qdrant-semantic: served by the built-in semantic "
                        "index (answers and vectors in Redis when a Redis is configured, else in process); "
                        "qdrant_* ignored")
    mode = str(params.get("mode") or "default_on")
    if mode not in ("default_on", "default_off"):
        raise CacheConfigError(f"litellm_settings.cache_params.mode: {mode!r} is not default_on or default_off")
    scope = str(params.get("scope") or "team")
    if scope not in ("team", "key", "global"):
        raise CacheConfigError(f"litellm_settings.cache_params.scope: {scope!r} is not team, key or global")
    settings = CacheSettings(type=kind, mode=mode, scope=scope, semantic=kind.endswith("semantic"))
    if not kind.startswith("local"):
        settings.redis_url = _redis_url(params) or gateway_redis
        if settings.redis_url is None and kind.startswith("redis"):
            raise CacheConfigError(f"litellm_settings.cache_params.type {kind}: no Redis (set cache_params "
                                   "host/port/password or redis_url, or general_settings.redis_url)")
    ttl = params.get("ttl", params.get("default_in_redis_ttl" if settings.shared else "default_in_memory_ttl"))
    if ttl is not None:
        settings.ttl = _positive(ttl, "ttl")
    settings.namespace = str(params.get("namespace") or "")
    calls = params.get("supported_call_types")
    if calls is not None:
        if not isinstance(calls, list):
            raise CacheConfigError("litellm_settings.cache_params.supported_call_types must be a list")
        routes: set[str] = set()
        for call in calls:
            if call not in CALL_TYPES:
                raise CacheConfigError(f"litellm_settings.cache_params.supported_call_types: unknown {call!r}")
            routes.update(CALL_TYPES[call])
        settings.routes = frozenset(routes)
    if "max_size_mb" in params:
        settings.max_bytes = int(_positive(params["max_size_mb"], "max_size_mb") * 1024 * 1024)
    if "similarity_threshold" in params:
        threshold = float(params["similarity_threshold"])
        if not 0 < threshold <= 1:
            raise CacheConfigError("litellm_settings.cache_params.similarity_threshold must be in (0, 1]")
        settings.similarity_threshold = threshold
    settings.embedding_model = (params.get("embedding_model") or params.get("redis_semantic_cache_embedding_model")
                                or params.get("qdrant_semantic_cache_embedding_model") or None)
    if "max_turns" in params:
        settings.max_turns = int(_positive(params["max_turns"], "max_turns"))
    if "embed_timeout_s" in params:
        settings.embed_timeout_s = _positive(params["embed_timeout_s"], "embed_timeout_s")
    if "max_entries_per_scope" in params:
        settings.max_entries_per_scope = int(_positive(params["max_entries_per_scope"], "max_entries_per_scope"))
    return settings


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CacheConfigError(f"litellm_settings.cache_params.{name}: {value!r} is not a number") from None
    if number <= 0:
        raise CacheConfigError(f"litellm_settings.cache_params.{name} must be more than 0")
    return number


def _redis_url(params: dict[str, Any]) -> str | None:
    if params.get("redis_url"):
        return str(params["redis_url"])
    host = params.get("host")
    if not host:
        return None
    from ..config import redis_url_of

    return redis_url_of(host, params.get("port") or 6379, params.get("username"), params.get("password"))
