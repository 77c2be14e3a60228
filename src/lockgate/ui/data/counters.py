"""What the guardrails and cache page shows besides the configuration: this process's counters since it
started (the Prometheus counters of ``observability/metrics.py``; with ``--workers N``, the worker that
answered the page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...gateway import Gateway


@dataclass
class Counts:
    by_label: dict[tuple[str, ...], float] = field(default_factory=dict)

    def get(self, *labels: str) -> float:
        return self.by_label.get(labels, 0.0)


def _samples(counter: Any) -> Counts:
    out = Counts()
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out.by_label[tuple(sample.labels.values())] = sample.value
    return out


def read(gw: Gateway) -> dict[str, Counts]:
    """The cache's and the guardrails' counters, tallies flushed first."""
    m = gw.metrics
    m.flush()
    return {"cache_requests": _samples(m.cache_requests), "cache_stores": _samples(m.cache_stores),
            "cache_saved_cost": _samples(m.cache_saved_cost), "cache_saved_tokens": _samples(m.cache_saved_tokens),
            "guardrail_verdicts": _samples(m.guardrail_verdicts)}
