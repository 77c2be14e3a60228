"""The built-in ``mock/`` provider: deterministic answers, no network, no account.

``litellm_params.mock_response`` sets the text (default: an echo of the last
user message), ``mock_latency_ms`` (Lockgate's addition) a delay before the
answer; streams send the text word by word.  Any deployment with
``mock_response`` set answers through this provider, as in LiteLLM.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..dialects import openai_chat
from . import Provider

if TYPE_CHECKING:
    from ..config import Deployment


def _last_user_text(req: dict[str, Any]) -> str:
    for msg in reversed(req.get("messages") or []):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


@dataclass(frozen=True)
class MockProvider(Provider):
    local: bool = True

    def answer(self, req: dict[str, Any], dep: Deployment) -> str:
        if dep.mock_response is not None:
            return str(dep.mock_response)
        return "This is a mock response to: " + _last_user_text(req)[:200]

    def usage(self, req: dict[str, Any], text: str) -> dict[str, Any]:
        prompt = sum(_estimate_tokens(str(m.get("content") or "")) for m in req.get("messages") or [])
        completion = _estimate_tokens(text)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def complete(self, req: dict[str, Any], dep: Deployment) -> dict[str, Any]:
        if dep.mock_latency_ms:
            await asyncio.sleep(dep.mock_latency_ms / 1000)
        text = self.answer(req, dep)
        return {
            "id": "chatcmpl-mock-" + uuid.uuid4().hex[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": dep.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": self.usage(req, text),
        }

    async def stream(self, req: dict[str, Any], dep: Deployment) -> AsyncIterator[dict[str, Any]]:
        text = self.answer(req, dep)
        words = text.split(" ")
        delay = dep.mock_latency_ms / 1000 / max(1, len(words)) if dep.mock_latency_ms else 0
        yield _chunk({"role": "assistant", "content": ""})
        for i, word in enumerate(words):
            if delay:
                await asyncio.sleep(delay)
            yield _chunk({"content": word if i == 0 else " " + word})
        yield _chunk({}, finish_reason="stop")
        yield {"object": "chat.completion.chunk", "choices": [], "usage": self.usage(req, text)}

    def embed(self, req: dict[str, Any], dep: Deployment) -> dict[str, Any]:
        inputs = req.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [{"object": "embedding", "index": i, "embedding": _vector(str(t))} for i, t in enumerate(items)]
        tokens = sum(_estimate_tokens(str(t)) for t in items)
        return {"object": "list", "data": data, "model": dep.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _vector(text: str, dims: int = 16) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((b - 127.5) / 127.5, 6) for b in digest[:dims]]


PROVIDERS: dict[str, Provider] = {"mock": MockProvider(name="mock", dialect=openai_chat)}
