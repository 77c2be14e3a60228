"""Offline token counting with tiktoken and the encoding files bundled in ``data/tiktoken``.

``count_prompt_tokens`` counts the prompt of a canonical (OpenAI chat) request or of an
Anthropic Messages body: message texts, tool calls and results, tool definitions, and a fixed
estimate per image.  ``o200k_base`` is used for the gpt-4o / gpt-4.1 / gpt-5 / o-series families,
``cl100k_base`` for every other model (for non-OpenAI models it is an estimate, labelled so).

Loading an encoding reads a few MB and takes tens of milliseconds the first time (tiktoken keeps
it afterwards), so callers on the event loop run the counting in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("lockgate")

# routes whose answer carries usage; when the provider reported none, accounting estimates the prompt
ROUTES = ("chat", "messages", "completions", "generate", "responses")
TIKTOKEN_DIR = Path(__file__).parent / "data" / "tiktoken"
IMAGE_TOKENS = 765  # a 1024x1024 image at high detail (OpenAI's tile formula); a fixed estimate
TOKENS_PER_MESSAGE = 3  # role and separators, OpenAI's chat format
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss", "codex")


def encoding_name(model: str) -> str:
    name = model.rsplit("/", 1)[-1].lower()
    return "o200k_base" if name.startswith(_O200K_PREFIXES) else "cl100k_base"


def encoding(name: str) -> Any:
    """tiktoken's encoding, read from the bundled files: never downloaded."""
    import tiktoken

    if os.environ.get("TIKTOKEN_CACHE_DIR") != str(TIKTOKEN_DIR):
        os.environ["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_DIR)
    return tiktoken.get_encoding(name)  # tiktoken caches it after the first load


def count_text(text: str, model: str) -> int:
    return len(encoding(encoding_name(model)).encode_ordinary(text)) if text else 0


def count_prompt_tokens(body: dict[str, Any], model: str) -> int:
    """Prompt tokens of a canonical chat request or an Anthropic Messages body."""
    texts: list[str] = []
    images = 0
    system = body.get("system")
    if system:
        texts.append("system")
        images += _collect(system, texts)
    messages = body.get("messages") or []
    if body.get("prompt") and not messages:  # legacy text completions
        images += _collect(body["prompt"], texts)
    if isinstance(body.get("input"), str) and not messages:  # the Responses API's simplest input
        texts.append(body["input"])
    images += _collect_gemini(body, texts)
    for msg in messages:
        if isinstance(msg, dict):
            images += _collect_message(msg, texts)
    if body.get("tools"):
        texts.append(orjson.dumps(body["tools"]).decode())
    enc = encoding(encoding_name(model))
    tokens = sum(len(enc.encode_ordinary(t)) for t in texts if t)
    overhead = TOKENS_PER_MESSAGE * (len(messages) + (1 if system else 0)) + REPLY_PRIMING
    return tokens + images * IMAGE_TOKENS + overhead


def _collect_message(msg: dict[str, Any], texts: list[str]) -> int:
    texts.append(str(msg.get("role") or ""))
    images = _collect(msg.get("content"), texts)
    for call in msg.get("tool_calls") or []:
        function = (call.get("function") if isinstance(call, dict) else None) or {}
        texts.append(str(function.get("name") or ""))
        texts.append(str(function.get("arguments") or ""))
    return images


def _collect(content: Any, texts: list[str]) -> int:
    """Texts of a content value (string, OpenAI parts or Anthropic blocks); returns the image count."""
    if isinstance(content, str):
        texts.append(content)
        return 0
    if not isinstance(content, list):
        return 0
    images = 0
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            images += _collect_part(part, texts)
    return images


def _collect_part(part: dict[str, Any], texts: list[str]) -> int:
    kind = part.get("type")
    if kind in ("image", "image_url", "input_image"):
        return 1
    if kind == "text":
        texts.append(str(part.get("text") or ""))
    elif kind == "thinking":
        texts.append(str(part.get("thinking") or ""))
    elif kind == "tool_use":
        texts.append(str(part.get("name") or ""))
        texts.append(orjson.dumps(part.get("input") or {}).decode())
    elif kind == "tool_result":
        return _collect(part.get("content"), texts)
    elif kind not in ("redacted_thinking",):
        texts.append(orjson.dumps(part).decode())  # documents and other blocks: their JSON as a bound
    return 0


def _collect_gemini(body: dict[str, Any], texts: list[str]) -> int:
    """Texts of a Gemini generateContent body (``contents``, ``systemInstruction``)."""
    contents = body.get("contents")
    if not isinstance(contents, list):
        return 0
    images = 0
    system = body.get("systemInstruction") or body.get("system_instruction")
    for content in [system, *contents]:
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict):
                continue
            if "text" in part:
                texts.append(str(part["text"]))
            elif "inlineData" in part or "inline_data" in part or "fileData" in part:
                images += 1
            else:
                texts.append(orjson.dumps(part).decode())
    return images


def estimated_usage(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Usage for accounting when the provider reported none: the prompt counted, the output unknown."""
    prompt = count_prompt_tokens(body, model)
    return {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt, "estimated": True}


async def estimate_missing_usage(body: dict[str, Any], model: str) -> dict[str, Any] | None:
    """``estimated_usage`` in a worker thread (tiktoken may load its files the first time)."""
    try:
        return await asyncio.to_thread(estimated_usage, body, model)
    except Exception as exc:  # noqa: BLE001  accounting must never fail a finished request
        log.warning("could not estimate usage: %s", type(exc).__name__)
        return None


async def count_prompt_tokens_async(body: dict[str, Any], model: str) -> int:
    return await asyncio.to_thread(count_prompt_tokens, body, model)


def gemini_count_body(canonical: dict[str, Any], model: str) -> dict[str, Any]:
    """A Gemini ``countTokens`` body for a canonical request: the whole generateContent request,
    so system instruction and tools are counted too."""
    from .dialects import gemini

    inner = gemini.request_from_canonical(canonical, model)
    inner.pop("generationConfig", None)
    return {"generateContentRequest": {"model": "models/" + model.removeprefix("models/"), **inner}}
