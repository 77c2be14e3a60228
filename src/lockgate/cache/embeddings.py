"""Embeddings in the response cache, one entry per input item (OpenAI's embeddings shape).

A request whose items are all stored is answered from them; a partial hit sends only the missing items
to the provider (``ctx.body['input']`` narrowed) and ``merge`` puts the answer back together in the
client's order, with the stored vectors at their places.  Usage and cost are the provider call's: the
stored items cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import time
from typing import TYPE_CHECKING, Any

import orjson

from .fill import CacheFill
from .keys import item_key

if TYPE_CHECKING:
    from ..context import RequestContext


def item_keys(ctx: RequestContext, scope: str, items: list[Any], namespace: str) -> list[str]:
    return [item_key(ctx, scope, item, namespace) for item in items]


def _entry(vector: Any, cost: float, tokens: int, model: str | None) -> bytes:
    return orjson.dumps({"t": time(), "e": vector, "c": cost, "k": tokens, "m": model})


def assemble(ctx: RequestContext, items: list[Any], found: list[bytes | None]) -> tuple[bytes, float, int]:
    """Every item stored: the answer, and what the first answers cost (saved now)."""
    data, cost, tokens, model = [], 0.0, 0, None
    for index, raw in enumerate(found):
        assert raw is not None
        entry = orjson.loads(raw)
        data.append({"object": "embedding", "index": index, "embedding": entry["e"]})
        cost += entry["c"]
        tokens += entry["k"]
        model = model or entry["m"]
    body = {"object": "list", "data": data, "model": model or ctx.model,
            "usage": {"prompt_tokens": 0, "total_tokens": 0}}
    return orjson.dumps(body), cost, tokens


@dataclass(slots=True)
class EmbeddingsFill(CacheFill):
    """A request with items to store (and, on a partial hit, vectors to merge into the answer)."""

    keys: list[str] = field(default_factory=list)
    found: list[bytes | None] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    store: bool = True

    async def merged(self, body: bytes) -> bytes:
        return self.merge(body)

    def merge(self, body: bytes) -> bytes:
        """The provider's answer for the missing items -> the answer for every item, in order."""
        answer = orjson.loads(body)
        fresh = sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))
        data = []
        it = iter(fresh)
        for index, raw in enumerate(self.found):
            item = dict(next(it)) if raw is None else {"object": "embedding", "embedding": orjson.loads(raw)["e"]}
            item["index"] = index
            data.append(item)
        return orjson.dumps({**answer, "data": data})

    def new_entries(self, cost: float) -> list[tuple[str, bytes]]:
        """(key, entry) of each item the provider answered (in the answer the client got, every item in
        order), with its share of the cost and tokens."""
        answer = orjson.loads(b"".join(self.chunks))
        data = sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))
        if len(data) != len(self.keys):
            return []
        missing = [(key, item) for key, raw, item in zip(self.keys, self.found, data, strict=True) if raw is None]
        usage = answer.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
        share = len(missing) or 1
        model = answer.get("model")
        return [(key, _entry(item.get("embedding"), cost / share, tokens // share, model)) for key, item in missing]
