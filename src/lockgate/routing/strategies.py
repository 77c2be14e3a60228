"""Routing strategies: choose one deployment among available candidates.

Every strategy has the same signature ``pick(candidates, stats, rng) -> Deployment``
and lives in ``STRATEGIES`` under its LiteLLM name.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .stats import StatsTable

if TYPE_CHECKING:
    from ..config import Deployment

# latency-based routing: deployments within this fraction of the fastest share the load
LATENCY_BUFFER = 0.1


def simple_shuffle(candidates: Sequence[Deployment], stats: StatsTable, rng: random.Random) -> Deployment:
    """Weighted random: ``weight``, else ``rpm``, else ``tpm``, else equal."""
    if any(d.weight != 1.0 for d in candidates):
        weights = [d.weight for d in candidates]
    elif all(d.rpm for d in candidates):
        weights = [float(d.rpm or 0) for d in candidates]
    elif all(d.tpm for d in candidates):
        weights = [float(d.tpm or 0) for d in candidates]
    else:
        return rng.choice(candidates)
    return rng.choices(candidates, weights=weights)[0]


def least_busy(candidates: Sequence[Deployment], stats: StatsTable, rng: random.Random) -> Deployment:
    fewest = min(stats[d.id].in_flight for d in candidates)
    return rng.choice([d for d in candidates if stats[d.id].in_flight == fewest])


def latency_based(candidates: Sequence[Deployment], stats: StatsTable, rng: random.Random) -> Deployment:
    """Lowest moving-average latency (time to first token when known); untried ones first,
    and near-equal ones (within the buffer) share the load."""
    untried = [d for d in candidates if _latency(stats, d) is None]
    if untried:
        return rng.choice(untried)
    scored = [(_latency(stats, d) or 0.0, d) for d in candidates]
    best = min(score for score, _ in scored)
    near = [d for score, d in scored if score <= best * (1 + LATENCY_BUFFER)]
    return rng.choice(near)


def _latency(stats: StatsTable, dep: Deployment) -> float | None:
    s = stats[dep.id]
    return s.ttft if s.ttft is not None else s.latency


def usage_based(candidates: Sequence[Deployment], stats: StatsTable, rng: random.Random) -> Deployment:
    """Most rpm/tpm headroom this minute (deployments without limits count as roomy)."""

    def headroom(dep: Deployment) -> float:
        requests, tokens = stats[dep.id].usage_this_minute()
        room = [1.0]
        if dep.rpm:
            room.append(1 - requests / dep.rpm)
        if dep.tpm:
            room.append(1 - tokens / dep.tpm)
        return min(room)

    best = max(headroom(d) for d in candidates)
    return rng.choice([d for d in candidates if headroom(d) == best])


def cost_based(candidates: Sequence[Deployment], stats: StatsTable, rng: random.Random) -> Deployment:
    """Cheapest by input + output price per token (model_info overrides, else the price table)."""
    priced = [(price_of(d), d) for d in candidates]
    cheapest = min(p for p, _ in priced)
    return rng.choice([d for p, d in priced if p == cheapest])


def price_of(dep: Deployment) -> float:
    info = dep.model_info
    if "input_cost_per_token" in info or "output_cost_per_token" in info:
        return float(info.get("input_cost_per_token") or 0) + float(info.get("output_cost_per_token") or 0)
    try:
        from ..governance.cost import price_per_token  # bundled price table, when present
    except ImportError:
        return float("inf")
    price = price_per_token(dep)
    return price if price is not None else float("inf")


Strategy = Callable[[Sequence["Deployment"], StatsTable, random.Random], "Deployment"]

STRATEGIES: dict[str, Strategy] = {
    "simple-shuffle": simple_shuffle,
    "least-busy": least_busy,
    "latency-based-routing": latency_based,
    "usage-based-routing": usage_based,
    "usage-based-routing-v2": usage_based,
    "cost-based-routing": cost_based,
}
