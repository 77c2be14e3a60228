"""OpenAI legacy text completions (``POST /v1/completions``): a front door only.

On a deployment whose provider serves ``/completions`` natively (OpenAI-dialect providers, see
``Provider.completions_url``) the request passes through untouched.  Everywhere else this module
turns the prompt into one user message for the chat path and renders the answer back as a
``text_completion`` object, or as ``text_completion`` stream chunks ending in ``data: [DONE]``.

What a chat model cannot do is refused with a 400 naming the field (translated requests only):
``echo``, ``suffix``, ``logprobs``, ``best_of`` > 1, several prompts or token-array prompts.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..errors import BadRequest
from ..transport.sse import encode_event
from .openai_chat import error_body, usage_from_body, usage_tap

NAME = "openai_completions"

__all__ = [
    "NAME",
    "error_body",
    "request_to_canonical",
    "response_from_canonical",
    "stream_encoder",
    "usage_from_body",
    "usage_tap",
]

_PASSED = ("model", "max_tokens", "temperature", "top_p", "stop", "stream", "stream_options", "n", "seed",
           "presence_penalty", "frequency_penalty", "user", "logit_bias")


def request_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    _refuse_unsupported(body)
    req = {k: body[k] for k in _PASSED if body.get(k) is not None}
    req["messages"] = [{"role": "user", "content": _prompt(body.get("prompt"))}]
    return req


def _refuse_unsupported(body: dict[str, Any]) -> None:
    if body.get("echo"):
        raise BadRequest("'echo' is not supported for this model (it is served through a chat model)", param="echo")
    if body.get("suffix"):
        raise BadRequest("'suffix' is not supported for this model (it is served through a chat model)",
                         param="suffix")
    if body.get("logprobs") is not None:
        raise BadRequest("'logprobs' is not supported for this model (it is served through a chat model)",
                         param="logprobs")
    best_of = body.get("best_of")
    if isinstance(best_of, int) and best_of > 1:
        raise BadRequest("'best_of' greater than 1 is not supported for this model", param="best_of")


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        raise BadRequest("this model takes one prompt per request; send the prompts separately", param="prompt")
    raise BadRequest("'prompt' must be a string (token arrays are not supported for this model)", param="prompt")


def _finish(reason: Any) -> Any:
    return "stop" if reason == "tool_calls" else reason


def _public_usage(usage: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": usage.get("total_tokens") or prompt + completion}


def response_from_canonical(resp: dict[str, Any], model: str) -> dict[str, Any]:
    choices = [
        {"text": (c.get("message") or {}).get("content") or "", "index": c.get("index", i), "logprobs": None,
         "finish_reason": _finish(c.get("finish_reason"))}
        for i, c in enumerate(resp.get("choices") or [])
    ]
    out: dict[str, Any] = {
        "id": "cmpl-" + str(resp.get("id") or "").removeprefix("chatcmpl-"),
        "object": "text_completion",
        "created": resp.get("created") or int(time.time()),
        "model": model,
        "choices": choices,
    }
    if resp.get("usage"):
        out["usage"] = _public_usage(resp["usage"])
    return out


class StreamEncoderImpl:
    """Canonical chat chunks -> ``text_completion`` chunks (text deltas only)."""

    def __init__(self, model: str, request_id: str, include_usage: bool = False) -> None:
        self.model = model
        self.id = "cmpl-" + request_id
        self.created = int(time.time())
        self.include_usage = include_usage

    def encode(self, chunk: dict[str, Any]) -> bytes:
        choices = []
        for c in chunk.get("choices") or []:
            delta = c.get("delta") or {}
            text, finish = delta.get("content"), _finish(c.get("finish_reason"))
            if text or finish:
                choices.append({"text": text or "", "index": c.get("index", 0), "logprobs": None,
                                "finish_reason": finish})
        usage = chunk.get("usage") if self.include_usage else None
        if not choices and not usage:
            return b""
        out: dict[str, Any] = {"id": self.id, "object": "text_completion", "created": self.created,
                               "model": self.model, "choices": choices}
        if usage:
            out["usage"] = _public_usage(usage)
        return encode_event(orjson.dumps(out))

    def finish(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, err: Exception) -> bytes:
        return encode_event(orjson.dumps(error_body(err)))


def stream_encoder(model: str, request_id: str, include_usage: bool = False) -> StreamEncoderImpl:
    return StreamEncoderImpl(model, request_id, include_usage)
