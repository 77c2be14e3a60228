"""The most output tokens a model may be asked for, and ``max_tokens`` clamped to it.

A client's ``max_tokens`` is meant for the model it thinks it talks to: Claude
Code asks for 32000 output tokens, which gpt-4o (16384) refuses with a 400.  On
the translated path only (a passthrough body is never touched), a ``max_tokens``
above the target's limit is lowered to the limit.  The limit is the
deployment's ``model_info.max_output_tokens`` (or ``model_info.max_tokens``,
LiteLLM's older name) when the operator set one, else the table below (matched
on the model id, longest name first, so ``gpt-4o-mini`` wins over ``gpt-4o`` and
``us.anthropic.claude-3-5-haiku-...`` finds ``claude-3-5-haiku``); a model in
neither is sent the client's value unchanged.  An Anthropic-style thinking
budget is kept below the new ceiling (Anthropic requires ``budget_tokens <
max_tokens``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# model name (as it appears in the model id) -> the provider's documented output-token ceiling
MAX_OUTPUT_TOKENS: dict[str, int] = {
    # OpenAI
    "gpt-3.5-turbo": 4096, "gpt-4": 8192, "gpt-4-turbo": 4096, "gpt-4o": 16384, "gpt-4o-mini": 16384,
    "chatgpt-4o": 16384, "gpt-4.1": 32768, "gpt-5": 128000, "o1": 100000, "o1-mini": 65536, "o3": 100000,
    "o3-mini": 100000, "o4-mini": 100000,
    # Google
    "gemini-1.5": 8192, "gemini-2.0": 8192, "gemini-2.5": 65536, "gemini-3": 65536,
    # Anthropic (also behind Bedrock and Vertex ids)
    "claude-3-haiku": 4096, "claude-3-opus": 4096, "claude-3-5-haiku": 8192, "claude-3-5-sonnet": 8192,
    "claude-3-7-sonnet": 64000, "claude-sonnet-4": 64000, "claude-opus-4": 32000, "claude-opus-4-5": 64000,
    "claude-haiku-4-5": 64000,
    # Cohere
    "command-r": 4000, "command-a": 8000,
}  # fmt: skip
MIN_THINKING_BUDGET = 1024  # Anthropic's smallest budget


@lru_cache(maxsize=512)
def table_limit(model: str) -> int | None:
    """The table's limit for a model id (longest matching name), or None."""
    name = model.rsplit("/", 1)[-1].lower()
    best = ""
    for known in MAX_OUTPUT_TOKENS:
        if len(known) > len(best) and _names(name, known):
            best = known
    return MAX_OUTPUT_TOKENS[best] if best else None


def _names(model: str, known: str) -> bool:
    """``known`` names the model: it starts the id or a dotted part of it, and ends at a word break."""
    at = model.find(known)
    while at != -1:
        starts = at == 0 or model[at - 1] in ".:/"
        end = at + len(known)
        ends = end == len(model) or model[end] in "-.:@_"
        if starts and ends:
            return True
        at = model.find(known, at + 1)
    return False


def limit_for(model: str, model_info: dict[str, Any] | None = None) -> int | None:
    info = model_info or {}
    for key in ("max_output_tokens", "max_tokens"):
        value = info.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return table_limit(model)


def clamp_max_tokens(req: dict[str, Any], model: str, model_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """``req`` with ``max_tokens`` lowered to the target's limit (the same dict when nothing changes)."""
    asked = req.get("max_tokens")
    if not isinstance(asked, int):
        return req
    limit = limit_for(model, model_info)
    if limit is None or asked <= limit:
        return req
    out = {**req, "max_tokens": limit}
    thinking = req.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int) \
            and thinking["budget_tokens"] >= limit:
        out["thinking"] = {**thinking, "budget_tokens": max(MIN_THINKING_BUDGET, limit // 2)}
    return out
