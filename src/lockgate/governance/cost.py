"""Cost of one request: canonical usage x per-token prices.

Prices come from the bundled table (``lockgate/data/prices.json``, USD per 1M
tokens) and can be overridden per deployment in ``model_info``
(``input_cost_per_token``, ``output_cost_per_token``,
``cache_read_input_token_cost``, ``cache_creation_input_token_cost``, USD per
token, LiteLLM's names).  Unknown models cost 0: such a deployment is *unpriced*
(``is_priced``), named in a warning at start-up and in ``GET /model/info``, and
refused to budget-limited requests with ``general_settings.reject_unpriced_for_budgets``.
A price of 0 set in ``model_info`` is a price: a deployment free on purpose.

Canonical usage (see ``dialects/__init__``): ``prompt_tokens`` includes cached
reads (``prompt_tokens_details.cached_tokens``) and cache writes
(``cache_creation_input_tokens``); each part is priced at its own rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ..config import Deployment

PER_MILLION = 1e-6


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per token
    output: float
    cache_read: float
    cache_write: float

    def cost(self, usage: dict[str, Any] | None) -> float:
        if not usage:
            return 0.0
        prompt = usage.get("prompt_tokens") or 0
        completion = usage.get("completion_tokens") or 0
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") or 0 if isinstance(details, dict) else 0
        created = usage.get("cache_creation_input_tokens") or 0
        fresh = max(prompt - cached - created, 0)
        return fresh * self.input + cached * self.cache_read + created * self.cache_write + completion * self.output


FREE = Price(0.0, 0.0, 0.0, 0.0)


@lru_cache(maxsize=1)
def table() -> dict[str, Price]:
    raw = orjson.loads(resources.files("lockgate").joinpath("data/prices.json").read_bytes())
    out: dict[str, Price] = {}
    for name, p in raw["models"].items():
        inp = p["input"] * PER_MILLION
        out[name] = Price(
            inp,
            p.get("output", 0.0) * PER_MILLION,
            p.get("cache_read", p["input"]) * PER_MILLION,
            p.get("cache_write", p["input"]) * PER_MILLION,
        )
    return out


_REGION = re.compile(r"^(us|eu|apac|global|jp|au)\.")
_DATE = re.compile(r"(-\d{8}|@\d{8}|-\d{4}-\d{2}-\d{2})(-v\d+:\d+)?$")


def lookup(model: str, provider: str | None = None) -> Price | None:
    """The table's price for an upstream model id (a few spellings tried)."""
    prices = table()
    candidates = [model]
    if provider:
        candidates.insert(0, f"{provider}/{model}")
    bare = _REGION.sub("", model)
    if bare.startswith("anthropic."):
        candidates.append(bare)
        bare = bare[len("anthropic."):]
    candidates += [bare, _DATE.sub("", bare), bare.split("@")[0]]
    if "/" in model:  # "models/gemini-2.5-flash", "accounts/x/models/y"
        candidates.append(model.rsplit("/", 1)[1])
    for name in candidates:
        price = prices.get(name)
        if price is not None:
            return price
    return None


def price_for(dep: Deployment) -> Price:
    """The deployment's price: bundled table, then ``model_info`` overrides."""
    info = dep.model_info or {}
    base = lookup(dep.model, dep.provider) or (lookup(str(info["base_model"])) if info.get("base_model") else None)
    base = base or FREE
    inp = _num(info.get("input_cost_per_token"), base.input)
    return Price(
        inp,
        _num(info.get("output_cost_per_token"), base.output),
        _num(info.get("cache_read_input_token_cost"), base.cache_read if base is not FREE else inp),
        _num(info.get("cache_creation_input_token_cost"), base.cache_write if base is not FREE else inp),
    )


def is_priced(dep: Deployment) -> bool:
    """True when the table knows the model (or its ``base_model``) or ``model_info`` sets a token price."""
    info = dep.model_info or {}
    if info.get("input_cost_per_token") is not None or info.get("output_cost_per_token") is not None:
        return True
    if lookup(dep.model, dep.provider) is not None:
        return True
    return bool(info.get("base_model")) and lookup(str(info["base_model"])) is not None


def price_per_token(dep: Deployment) -> float | None:
    """Input + output price per token (cost-based routing), None for an unpriced deployment."""
    if not is_priced(dep):
        return None
    price = price_for(dep)
    return price.input + price.output


def unpriced(deployments: list[Deployment]) -> list[Deployment]:
    return [dep for dep in deployments if not is_priced(dep)]


def _num(value: Any, default: float) -> float:
    return default if value is None else float(value)
