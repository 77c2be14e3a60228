"""Test plugins that fail: one raises in every hook, one hangs for 30 s in every hook."""

from __future__ import annotations

import asyncio
from typing import Any

from lockgate.plugins import CustomLogger


class Raising(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> Any:
        raise ValueError("a bug in a plugin")

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        raise ValueError("a bug in a logger")

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        raise KeyError("missing")


class Hanging(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> Any:
        await asyncio.sleep(30)

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        await asyncio.sleep(30)


class SlowLogger(CustomLogger):
    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        await asyncio.sleep(30)


raising = Raising()
hanging = Hanging()
slow_logger = SlowLogger()


class BadReturn(CustomLogger):
    """Returns a body without messages for the header x-bad-return, else a number."""

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> Any:
        if "x-bad-return" in data["proxy_server_request"]["headers"]:
            return {"model": data.get("model")}
        return 42


bad_return = BadReturn()
