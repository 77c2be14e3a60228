"""spend_anomaly (Lockgate's own alert type): a key or team whose spend rate jumps far above its own
recent baseline.

Rule, per subject (a key by its hash, a team by its id), in this process:

- time is cut in windows of ``anomaly_window`` seconds (default 300); the spend of the window in
  progress is summed as requests finish;
- when a window closes, the baseline (an exponentially weighted mean of the per-window spend) moves
  towards it with weight ``alpha = anomaly_window / anomaly_horizon`` (horizon default 3600: about the
  last hour weighs); windows without spend count as 0;
- the alert fires when the window in progress has spent more than
  ``max(anomaly_factor * baseline, anomaly_min_spend)`` (defaults 5 and 1.0 USD) and the subject has at
  least ``anomaly_min_windows`` closed windows of history (default 3); once per subject and window.

At most ``anomaly_max_subjects`` subjects are tracked (the least recently seen is dropped).  Each
instance judges its own traffic: with several instances behind a balancer each sees its share, so the
floor applies to that share.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Rate:
    slot: int  # the window index in progress
    spend: float = 0.0  # spent in it so far
    baseline: float | None = None
    windows: int = 0  # closed windows seen (capped)


class SpendRates:
    def __init__(self, window: float, horizon: float, factor: float, floor: float, min_windows: int,
                 max_subjects: int) -> None:
        self.window = window
        self.alpha = min(1.0, window / horizon)
        self.factor = factor
        self.floor = floor
        self.min_windows = min_windows
        self.max_subjects = max(1, max_subjects)
        self._rates: OrderedDict[str, _Rate] = OrderedDict()

    def add(self, subject: str, cost: float, now: float) -> tuple[int, float, float] | None:
        """Count ``cost``; (window index, window spend, baseline) when this window is anomalous."""
        slot = int(now // self.window)
        rate = self._rates.get(subject)
        if rate is None:
            rate = self._rates[subject] = _Rate(slot)
            if len(self._rates) > self.max_subjects:
                self._rates.popitem(last=False)
        else:
            self._rates.move_to_end(subject)
            if slot != rate.slot:
                self._close(rate, slot)
        rate.spend += cost
        baseline = rate.baseline or 0.0
        if rate.windows >= self.min_windows and rate.spend > max(self.factor * baseline, self.floor):
            return slot, rate.spend, baseline
        return None

    def _close(self, rate: _Rate, slot: int) -> None:
        passed = max(1, slot - rate.slot)
        b = rate.spend if rate.baseline is None else rate.baseline + self.alpha * (rate.spend - rate.baseline)
        if passed > 1:  # the windows in between spent nothing
            b *= (1 - self.alpha) ** min(passed - 1, 10_000)
        rate.baseline = b
        rate.windows = min(rate.windows + passed, 1_000_000)
        rate.slot, rate.spend = slot, 0.0
