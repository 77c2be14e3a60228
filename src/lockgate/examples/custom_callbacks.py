"""An example Lockgate plugin, written as a LiteLLM custom callback (see docs/plugins.md).

Put this file next to config.yaml and name its instance in the config:

    litellm_settings:
      callbacks: custom_callbacks.proxy_handler_instance

It refuses requests that mention a banned word (``EXAMPLE_BANNED_WORDS``, comma
separated, default ``forbidden-topic``), tags each request with its caller's
``x-tenant`` header (OpenAI-shaped bodies: ``user``; Anthropic: ``metadata.user_id``),
and logs one line per finished request with its key alias, tokens and cost
(never the prompt).  From a LiteLLM callback file, only the import line changed.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

from lockgate.plugins import CustomLogger, DualCache, RejectRequest, UserAPIKeyAuth

log = logging.getLogger("lockgate.plugins.example")


def _texts(value: Any) -> list[str]:
    """Every string in a request body (messages, input, contents, system ...): any front door's shape."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


class ExampleHandler(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        words = os.environ.get("EXAMPLE_BANNED_WORDS", "forbidden-topic")
        self.banned = [w.strip().lower() for w in words.split(",") if w.strip()]
        self.requests: Counter[str] = Counter()  # finished requests per key alias and outcome

    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict,
                                  call_type: str) -> dict | None:
        prompt = {k: v for k, v in data.items() if k != "proxy_server_request"}
        text = " ".join(_texts(prompt)).lower()
        for word in self.banned:
            if word in text:
                raise RejectRequest(f"this gateway does not accept requests about '{word}'", status_code=400)
        tenant = data["proxy_server_request"]["headers"].get("x-tenant")
        if tenant:
            if call_type == "anthropic_messages":
                data["metadata"] = {**(data.get("metadata") or {}), "user_id": f"tenant-{tenant}"}
            elif call_type in ("completion", "text_completion", "embeddings", "responses"):
                data["user"] = f"tenant-{tenant}"
        return data

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._count(kwargs, "success", response_obj["usage"]["total_tokens"])

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._count(kwargs, "failure", 0)

    def _count(self, kwargs: dict, outcome: str, tokens: int) -> None:
        alias = kwargs["litellm_params"]["metadata"]["user_api_key_alias"] or "-"
        self.requests[f"{alias}:{outcome}"] += 1
        log.info("example plugin: request %s %s model=%s key=%s tokens=%d cost=%.6f (%d %s for this key)",
                 kwargs["litellm_call_id"], outcome, kwargs["model"], alias, tokens, kwargs["response_cost"],
                 self.requests[f"{alias}:{outcome}"], outcome)


proxy_handler_instance = ExampleHandler()
