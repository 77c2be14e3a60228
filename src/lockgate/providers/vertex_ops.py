"""Vertex AI operations beyond chat, as plain body builders (no I/O): text embeddings and
Gemini token counting.  ``providers.vertex`` wires them to its URLs.

* Embeddings (``vertex_ai/text-embedding-*``, ``vertex_ai/gemini-embedding-*``,
  ``text-multilingual-embedding-*``): ``POST ...:predict`` with
  ``{"instances": [{"content": text}], "parameters": {"outputDimensionality": n}}``,
  answered with ``{"predictions": [{"embeddings": {"values": [...],
  "statistics": {"token_count": n, "truncated": false}}}]}``.  ``gemini-embedding-*``
  models take one instance per request, so those are sent one input per call.
* countTokens for Gemini on Vertex takes the request's fields at the top level
  (``contents``, ``systemInstruction``, ``tools``, ``generationConfig``), not the Gemini
  API's ``generateContentRequest`` wrapper with a ``models/...`` name.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest

_COUNT_FIELDS = ("contents", "systemInstruction", "tools", "generationConfig")


def one_per_call(model: str) -> bool:
    """True for the models that embed a single instance per request (gemini-embedding-*)."""
    return model.startswith("gemini-embedding")


def _texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("Vertex AI embeddings take a string or a list of strings (no token arrays)", param="input")
    return texts


def predict_request(req: dict[str, Any]) -> dict[str, Any]:
    """OpenAI embeddings request -> Vertex ``:predict`` body (``task_type`` passed on when given)."""
    instances: list[dict[str, Any]] = []
    for text in _texts(req.get("input")):
        instance: dict[str, Any] = {"content": text}
        if req.get("task_type"):
            instance["task_type"] = req["task_type"]
        instances.append(instance)
    body: dict[str, Any] = {"instances": instances}
    if req.get("dimensions"):
        body["parameters"] = {"outputDimensionality": req["dimensions"]}
    return body


def predict_response(body: Any, model: str) -> dict[str, Any]:
    """Vertex ``:predict`` answer (or the answers of one-per-call models, in order) -> OpenAI embeddings."""
    replies = body if isinstance(body, list) else [body]
    predictions = [p for reply in replies for p in (reply or {}).get("predictions") or []]
    data, tokens = [], 0
    for index, prediction in enumerate(predictions):
        embeddings = prediction.get("embeddings") or {}
        data.append({"object": "embedding", "index": index, "embedding": embeddings.get("values") or []})
        tokens += int((embeddings.get("statistics") or {}).get("token_count") or 0)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def count_tokens_body(body: dict[str, Any]) -> dict[str, Any]:
    """A Gemini API countTokens body (``contents`` or ``generateContentRequest``) -> Vertex's."""
    inner = body.get("generateContentRequest")
    source = inner if isinstance(inner, dict) else body
    return {k: source[k] for k in _COUNT_FIELDS if k in source}
