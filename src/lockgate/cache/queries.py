"""What the semantic index compares: the prompt text of a request, and a guard for everything else.

Only requests whose last turn is the user's, in plain text (a string, or text parts only), are semantic
candidates: an image or a file in that turn is not in the text, so such requests use the exact cache only.
The guard is a digest of the whole request with that text taken out (system prompt, earlier turns, tools,
parameters), the route, the model group and the stream flag: a semantic hit needs it equal.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson

from .keys import TRANSPORT_FIELDS

if TYPE_CHECKING:
    from ..context import RequestContext
    from .semantic import SemanticQuery

# route -> (the body's turn list, the user's role name in it)
_TURNS = {"chat": ("messages", "user"), "messages": ("messages", "user"), "generate": ("contents", "user"),
          "responses": ("input", "user")}
PLACEHOLDER = "\x00prompt\x00"


def semantic_query(ctx: RequestContext, scope: str) -> SemanticQuery | None:
    body = {k: v for k, v in (ctx.unmasked_body or ctx.body).items() if k not in TRANSPORT_FIELDS}
    route = ctx.route
    if route == "completions":
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return None
        return _query(ctx, scope, {**body, "prompt": PLACEHOLDER}, prompt, 1)
    if route == "responses" and isinstance(body.get("input"), str):
        return _query(ctx, scope, {**body, "input": PLACEHOLDER}, body["input"], 1)
    if route not in _TURNS:
        return None
    field, user = _TURNS[route]
    turns = body.get(field)
    if not isinstance(turns, list) or not turns or not isinstance(turns[-1], dict):
        return None
    last = turns[-1]
    if last.get("role", "user") != user:
        return None
    text = _text(last.get("parts") if route == "generate" else last.get("content"))
    if text is None or not text.strip():
        return None
    guard_body = {**body, field: [*turns[:-1], {**last, "content": PLACEHOLDER, "parts": PLACEHOLDER}]}
    return _query(ctx, scope, guard_body, text, len(turns))


def _query(ctx: RequestContext, scope: str, guard_body: dict[str, Any], text: str, turns: int) -> SemanticQuery:
    from .semantic import SemanticQuery  # numpy: imported only when a semantic cache is configured

    material = orjson.dumps([ctx.route, ctx.model_group, ctx.stream, guard_body], option=orjson.OPT_SORT_KEYS)
    return SemanticQuery(scope=scope, guard=hashlib.sha256(material).hexdigest(), text=text, turns=turns)


def _text(content: Any) -> str | None:
    """A string, or a list of only text parts (OpenAI / Anthropic ``{type: text}``, Gemini ``{text}``)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        return None
    texts = []
    for part in content:
        if not isinstance(part, dict):
            return None
        text = part.get("text")
        typed = part.get("type") in ("text", "input_text") or ("type" not in part and set(part) == {"text"})
        if not typed or not isinstance(text, str):
            return None
        texts.append(text)
    return "\n".join(texts)
