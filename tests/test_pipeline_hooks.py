"""Hooks in the pipeline: an exception in a post_response / on_error hook (or in accounting) never escapes
the request handler; the client's answer is unchanged and the failure is counted."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from lockgate import config, pipeline
from lockgate.context import RequestContext
from lockgate.dialects import openai_chat
from lockgate.gateway import Gateway


def _gateway() -> Gateway:
    settings = config.from_dict({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m", "mock_response": "hi there"}}],
        "lockgate_settings": {"access_log": False},
    })
    return Gateway(settings)


async def _run(gw: Gateway, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    ctx = RequestContext(request_id=gw.new_request_id(), route="chat", dialect=openai_chat, headers={})
    await pipeline.handle(gw, ctx, orjson.dumps(body), send, receive)
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], orjson.loads(payload)


async def _boom(*args: Any) -> None:
    raise RuntimeError("hook failed")


@pytest.mark.parametrize("where", ["post_response", "on_error"])
async def test_a_raising_hook_does_not_escape_the_handler(where):
    gw = _gateway()
    getattr(gw.hooks, where).append(_boom)
    ok_body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    body = ok_body if where == "post_response" else {**ok_body, "model": "no-such-model"}
    status, answer = await _run(gw, body)  # before the fix: RuntimeError out of pipeline.handle
    if where == "post_response":
        assert status == 200 and answer["choices"][0]["message"]["content"] == "hi there"
    else:
        assert status == 404 and answer["error"]["type"] == "not_found_error"
    text = gw.metrics.render().decode()
    assert f'lockgate_plugin_errors_total{{error="exception",hook="{where}",plugin="_boom"}} 1.0' in text
    await gw.upstream.close()


async def test_a_failure_in_accounting_does_not_escape_the_handler():
    gw = _gateway()

    def broken(record: dict[str, Any]) -> None:
        raise OSError("disk full")

    gw.access_log.write = broken  # type: ignore[method-assign]
    status, answer = await _run(gw, {"model": "m", "messages": [{"role": "user", "content": "hello"}]})
    assert status == 200 and answer["choices"][0]["message"]["content"] == "hi there"
    await gw.upstream.close()


async def test_on_error_hooks_receive_the_error():
    gw = _gateway()
    seen: list[Any] = []

    async def on_error(gateway: Gateway, ctx: RequestContext, error: Exception | None) -> None:
        seen.append((ctx.status, error))

    gw.hooks.on_error.append(on_error)
    status, _ = await _run(gw, {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404 and seen and seen[0][0] == 404 and getattr(seen[0][1], "status", None) == 404
    await gw.upstream.close()
