"""Failure kinds, retry policy and back-off (LiteLLM's ``router_settings`` keys)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import LockgateError

# failure kind -> LiteLLM retry_policy key
POLICY_KEYS = {
    "bad_request": "BadRequestErrorRetries",
    "auth": "AuthenticationErrorRetries",
    "timeout": "TimeoutErrorRetries",
    "rate_limit": "RateLimitErrorRetries",
    "content_policy": "ContentPolicyViolationErrorRetries",
    "server": "InternalServerErrorRetries",
    "context_window": "ContextWindowExceededErrorRetries",
}
# kinds retried by default (num_retries applies to these unless retry_policy says otherwise)
RETRIED_BY_DEFAULT = {"timeout", "rate_limit", "server"}
# kinds that put a deployment in cooldown at once (LiteLLM: 429, 401, 404, 408)
IMMEDIATE_COOLDOWN_STATUS = {429, 401, 404, 408}
# the client's own fault (its body): never counted against a deployment, whatever the message says
CLIENT_FAULT_STATUS = frozenset({400, 413, 422})
# what counts toward allowed_fails and cooldowns (LiteLLM): configuration (401/403/404), 408, 429, 5xx,
# timeouts and unreachable providers (which arrive as 502/504)
COUNTED_STATUS = frozenset({401, 403, 404, 408, 429})

_CONTEXT_HINTS = ("context length", "context_length", "maximum context", "prompt is too long",
                  "too many tokens", "context window", "input is too long", "exceeds the maximum")
_POLICY_HINTS = ("content_policy", "content policy", "content_filter", "safety", "responsible ai")


def failure_kind(err: LockgateError) -> str:
    """What kind of failure an upstream error is, for retries and fallbacks (the provider's own status)."""
    status = getattr(err, "upstream_status", None) or err.status
    text = f"{err.code or ''} {err.message}".lower()
    if status in (400, 413, 422) and any(h in text for h in _CONTEXT_HINTS):
        return "context_window"
    if status in (400, 403) and any(h in text for h in _POLICY_HINTS):
        return "content_policy"
    if status == 429:
        return "rate_limit"
    if status in (408, 504) or err.kind == "upstream_timeout":
        return "timeout"
    if status in (401, 403) or err.type == "authentication_error":  # Gemini: a bad key is a 400
        return "auth"
    if status >= 500:
        return "server"
    return "bad_request"


def counts_against_deployment(err: LockgateError, kind: str) -> bool:
    """True when a failure says something about the deployment (allowed_fails, cooldowns); a 400,
    413 or 422 that the client's body caused says nothing about it."""
    status = getattr(err, "upstream_status", None) or err.status
    if kind == "auth":  # a bad provider key, whatever status it came with (Gemini: 400)
        return True
    if status in CLIENT_FAULT_STATUS or kind in ("context_window", "content_policy"):
        return False
    return status in COUNTED_STATUS or status >= 500 or kind == "timeout"


@dataclass
class RetryPolicy:
    num_retries: int = 0
    per_kind: dict[str, int] = field(default_factory=dict)  # kind -> retries
    retry_after: float = 0.0  # floor between attempts, seconds
    base_delay: float = 0.05  # first back-off step; doubles each attempt
    max_delay: float = 8.0

    @classmethod
    def from_settings(cls, router: dict[str, Any]) -> RetryPolicy:
        policy = router.get("retry_policy") or {}
        per_kind = {kind: int(policy[key]) for kind, key in POLICY_KEYS.items() if key in policy}
        return cls(
            num_retries=int(router.get("num_retries") or 0),
            per_kind=per_kind,
            retry_after=float(router.get("retry_after") or 0),
        )

    def retries_for(self, kind: str) -> int:
        if kind in self.per_kind:
            return self.per_kind[kind]
        return self.num_retries if kind in RETRIED_BY_DEFAULT else 0

    def delay(self, attempt: int, err: LockgateError, rng: random.Random) -> float:
        """Exponential back-off with full jitter, never below Retry-After or the floor."""
        backoff = min(self.max_delay, self.base_delay * (2 ** attempt))
        delay = rng.uniform(backoff / 2, backoff)
        retry_after = _retry_after_seconds(err)
        return max(delay, retry_after or 0.0, self.retry_after)


def _retry_after_seconds(err: LockgateError) -> float | None:
    value = err.headers.get("Retry-After") or err.headers.get("retry-after")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None
