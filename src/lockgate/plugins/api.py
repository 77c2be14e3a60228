"""What a plugin file imports: the base class, the rejection, the caller and the cache.

These mirror LiteLLM's custom-callback names (``CustomLogger``, ``UserAPIKeyAuth``,
``DualCache``) so that a LiteLLM callback file works once its imports read
``from lockgate.plugins import ...`` (docs/plugins.md).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from time import monotonic
from typing import Any


class RejectRequest(Exception):
    """Raised by a pre-call or moderation hook to refuse a request.

    The client gets ``status_code`` (a 4xx or 5xx, default 400) and ``message`` as an
    error in its own API dialect.  Any exception with an integer ``status_code`` and a
    ``detail`` (FastAPI's / Starlette's ``HTTPException``, as LiteLLM plugins raise) is
    read the same way.
    """

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(slots=True)
class UserAPIKeyAuth:
    """The caller, as hooks see it (LiteLLM's ``user_api_key_dict``).  Never the raw key:
    ``api_key`` and ``token`` hold its sha256 hash (the id of spend logs)."""

    api_key: str | None = None
    token: str | None = None
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    user_role: str | None = None  # "proxy_admin" for the master key
    end_user_id: str | None = None  # the request's ``user`` field
    models: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    team_metadata: dict[str, Any] = field(default_factory=dict)
    spend: float = 0.0
    max_budget: float | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None


class DualCache:
    """The ``cache`` argument of ``async_pre_call_hook``: a small in-process TTL cache
    (one per gateway process, not shared between instances; oldest entries go first
    beyond ``max_entries``)."""

    def __init__(self, max_entries: int = 10_000, default_ttl: float | None = None) -> None:
        self._entries: OrderedDict[str, tuple[float | None, Any]] = OrderedDict()
        self.max_entries = max_entries
        self.default_ttl = default_ttl

    def get_cache(self, key: str, **_: Any) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires is not None and expires <= monotonic():
            del self._entries[key]
            return None
        return value

    def set_cache(self, key: str, value: Any, ttl: float | None = None, **_: Any) -> None:
        ttl = ttl if ttl is not None else self.default_ttl
        self._entries[key] = (monotonic() + ttl if ttl is not None else None, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def increment_cache(self, key: str, value: float = 1, ttl: float | None = None, **_: Any) -> float:
        total = (self.get_cache(key) or 0) + value
        self.set_cache(key, total, ttl)
        return total

    def delete_cache(self, key: str) -> None:
        self._entries.pop(key, None)

    async def async_get_cache(self, key: str, **kw: Any) -> Any:
        return self.get_cache(key, **kw)

    async def async_set_cache(self, key: str, value: Any, ttl: float | None = None, **kw: Any) -> None:
        self.set_cache(key, value, ttl, **kw)

    async def async_increment_cache(self, key: str, value: float = 1, ttl: float | None = None, **kw: Any) -> float:
        return self.increment_cache(key, value, ttl, **kw)

    async def async_delete_cache(self, key: str) -> None:
        self.delete_cache(key)


class CustomLogger:
    """Base class of a plugin (LiteLLM's ``CustomLogger``): override the hooks you need.

    Hooks left as they are here cost nothing: the gateway only calls the ones a
    plugin's class defines itself.  See docs/plugins.md for what each receives.
    """

    def __init__(self, **kwargs: Any) -> None:
        pass

    # -- on the request path, time-bounded (lockgate_settings.callback_timeout)

    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any],
                                  call_type: str) -> Any:
        """Modify ``data`` in place or return a new dict; raise ``RejectRequest`` (or return a
        string) to refuse the request."""
        return None

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                    call_type: str) -> Any:
        """Raise ``RejectRequest`` to refuse the request (run after the pre-call hooks)."""
        return None

    # -- after the answer went out, off the request path (lockgate_settings.callback_log_timeout)

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        return None

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        return None

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth,
                                           response: Any) -> Any:
        return None

    async def async_post_call_failure_hook(self, request_data: dict[str, Any], original_exception: Exception,
                                           user_api_key_dict: UserAPIKeyAuth) -> Any:
        return None

    def log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        """Synchronous variant: run in a worker thread."""

    def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        """Synchronous variant: run in a worker thread."""
