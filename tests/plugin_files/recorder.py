"""Test plugin: writes every hook call it gets to the JSON-lines file named by PLUGIN_EVENTS."""

from __future__ import annotations

import json
import os
from typing import Any

from lockgate.plugins import CustomLogger, DualCache, UserAPIKeyAuth


def _write(kind: str, payload: dict[str, Any]) -> None:
    with open(os.environ["PLUGIN_EVENTS"], "a") as out:
        out.write(json.dumps({"event": kind, **payload}, default=str) + "\n")


class Recorder(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict,
                                  call_type: str) -> dict:
        headers = data["proxy_server_request"]["headers"]
        if "x-test-model" in headers:
            data["model"] = headers["x-test-model"]
        seen = await cache.async_increment_cache("pre-calls", 1)
        _write("pre_call", {"call_type": call_type, "key_alias": user_api_key_dict.key_alias,
                            "api_key": user_api_key_dict.api_key, "headers": headers, "seen": seen,
                            "request_id": headers.get("x-test-id")})
        return data

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        _write("success", {"kwargs": kwargs, "response_obj": response_obj, "total_tokens": response_obj.usage.total_tokens,
                           "seconds": (end_time - start_time).total_seconds()})

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        _write("failure", {"kwargs": kwargs, "response_obj": response_obj})

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: UserAPIKeyAuth, response: Any) -> None:
        _write("post_call_success", {"model": data.get("model"), "key_alias": user_api_key_dict.key_alias,
                                     "usage": response["usage"]})

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict: UserAPIKeyAuth, traceback_str: str | None = None) -> None:
        _write("post_call_failure", {"model": request_data.get("model"), "message": str(original_exception),
                                     "status": getattr(original_exception, "status", None)})


class Legacy:
    """Not a CustomLogger subclass, and LiteLLM's older failure-hook signature."""

    async def async_post_call_failure_hook(self, original_exception: Exception, user_api_key_dict: Any) -> None:
        _write("legacy_failure", {"message": str(original_exception)})


def log_fn(kwargs: dict, completion_response: Any, start_time: Any, end_time: Any) -> None:
    """A LiteLLM callback function (success_callback), synchronous: run in a thread."""
    _write("function_success", {"request_id": kwargs["litellm_call_id"]})


recorder = Recorder()
legacy = Legacy()
