"""What hooks receive, built from a request's context (docs/plugins.md is the contract).

Built only when plugins are configured; nothing here runs on a gateway without them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..governance.types import Principal
from .api import UserAPIKeyAuth

if TYPE_CHECKING:
    from ..context import RequestContext

# route -> LiteLLM's call_type
CALL_TYPES = {
    "chat": "completion",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "messages": "anthropic_messages",
    "responses": "responses",
    "generate": "generate_content",
}
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "proxy-authorization"})


class AttrDict(dict[str, Any]):
    """A dict also read by attribute (``response_obj.usage.total_tokens``), as LiteLLM's response objects."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return AttrDict(value) if isinstance(value, dict) and not isinstance(value, AttrDict) else value


def call_type(route: str) -> str:
    return CALL_TYPES.get(route, route)


def safe_headers(headers: dict[str, str]) -> dict[str, str]:
    """The client's request headers without credentials."""
    return {k: v for k, v in headers.items() if k not in SECRET_HEADERS}


def caller(ctx: RequestContext, master_hash: str | None) -> UserAPIKeyAuth:
    end_user = ctx.body.get("user")
    end_user = end_user if isinstance(end_user, str) and end_user else None
    p = ctx.principal
    if isinstance(p, Principal):
        key, team = p.key, p.team
        return UserAPIKeyAuth(
            api_key=key.token_hash, token=key.token_hash, key_alias=key.key_alias, user_id=key.user_id,
            team_id=key.team_id, org_id=key.organization_id or (p.organization.id if p.organization else None),
            user_role=p.user.role if p.user else None, end_user_id=end_user, models=list(key.models),
            metadata=dict(key.metadata), team_metadata=dict(team.metadata) if team else {},
            spend=key.limits.spend, max_budget=key.limits.max_budget, rpm_limit=key.limits.rpm_limit,
            tpm_limit=key.limits.tpm_limit, max_parallel_requests=key.limits.max_parallel_requests,
        )
    if p == "master":
        return UserAPIKeyAuth(api_key=master_hash, token=master_hash, user_role="proxy_admin", end_user_id=end_user)
    return UserAPIKeyAuth(end_user_id=end_user)


def request_view(ctx: RequestContext) -> dict[str, Any]:
    """``data["proxy_server_request"]`` during the pre-call hooks (removed before the call)."""
    return {"route": ctx.route, "method": "POST", "headers": safe_headers(ctx.headers)}


def log_kwargs(ctx: RequestContext, key: UserAPIKeyAuth, error: Exception | None, start: datetime,
               end: datetime) -> dict[str, Any]:
    """The ``kwargs`` of ``async_log_success_event`` / ``async_log_failure_event``."""
    dep, usage = ctx.deployment, usage_of(ctx)
    cost = ctx.grant.cost if ctx.grant is not None else 0.0
    provider = ctx.provider.name if ctx.provider else None
    metadata = {
        "user_api_key_hash": key.api_key, "user_api_key_alias": key.key_alias,
        "user_api_key_user_id": key.user_id, "user_api_key_team_id": key.team_id,
        "user_api_key_org_id": key.org_id, "user_api_key_end_user_id": key.end_user_id,
        "model_group": ctx.model_group or None, "deployment": dep.id if dep else None,
        "headers": safe_headers(ctx.headers),
    }
    kwargs: dict[str, Any] = {
        "litellm_call_id": ctx.request_id,
        "call_type": call_type(ctx.route),
        "model": ctx.model or None,
        "model_group": ctx.model_group or None,
        "deployment_id": dep.id if dep else None,
        "deployment_model": dep.model if dep else None,
        "custom_llm_provider": provider,
        "stream": ctx.stream,
        "passthrough": ctx.passthrough,
        "messages": ctx.body.get("messages"),
        "user": key.end_user_id,
        "status_code": ctx.status,
        "usage": usage,
        "response_cost": cost,
        "retries": ctx.retries,
        "fallbacks": ctx.fallbacks,
        "start_time": start,
        "end_time": end,
        "litellm_params": {"metadata": metadata},
        "standard_logging_object": {
            "id": ctx.request_id, "call_type": call_type(ctx.route),
            "status": "failure" if error is not None or ctx.error_kind else "success",
            "response_cost": cost, "model": ctx.model or None, "model_group": ctx.model_group or None,
            "model_id": dep.id if dep else None, "custom_llm_provider": provider,
            "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "startTime": start.timestamp(), "endTime": end.timestamp(), "stream": ctx.stream,
            "metadata": {k: v for k, v in metadata.items() if k != "headers"},
            "error_str": str(error) if error is not None else None,
        },
    }
    if error is not None or ctx.error_kind:
        kwargs["exception"] = error
        kwargs["error_kind"] = ctx.error_kind
    return kwargs


def usage_of(ctx: RequestContext) -> dict[str, Any]:
    """The request's usage with the three OpenAI counts always present (total = input + output when absent)."""
    usage = dict(ctx.usage or {})
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    usage.update(prompt_tokens=prompt, completion_tokens=completion,
                 total_tokens=usage.get("total_tokens") or prompt + completion)
    return usage


def response_obj(ctx: RequestContext) -> AttrDict:
    """The answer's summary (the answer's content is not kept: it went to the client as it arrived)."""
    usage = usage_of(ctx)
    return AttrDict({
        "id": ctx.request_id,
        "object": "chat.completion.chunk" if ctx.stream else "chat.completion",
        "model": ctx.model or None,
        "usage": AttrDict({k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}),
        "status_code": ctx.status,
    })
