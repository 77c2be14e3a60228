"""outage_alerts: provider failures (after retries) per deployment within ``outage_alert_ttl`` seconds;
``minor_outage_alert_threshold`` of them raise a minor outage, ``major_outage_alert_threshold`` a major
one (each once per deployment and window).  Also keeps each deployment's failure count for the daily
report."""

from __future__ import annotations

from collections import deque


class Outages:
    def __init__(self, window: float, minor: int, major: int, max_list: int) -> None:
        self.window = window
        self.minor = minor
        self.major = major
        self.max_list = max(1, max_list)
        self._times: dict[str, deque[float]] = {}
        self.failures: dict[str, int] = {}  # deployment -> failures since the last daily report

    def add(self, deployment: str, now: float) -> str | None:
        """Count a failure; "major" / "minor" when that threshold is reached, else None."""
        times = self._times.get(deployment)
        if times is None:
            if len(self._times) >= 10_000:
                self._times.clear()
            times = self._times[deployment] = deque(maxlen=self.max_list)
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(self.failures) < 10_000 or deployment in self.failures:
            self.failures[deployment] = self.failures.get(deployment, 0) + 1
        count = len(times)
        if count >= self.major:
            return "major"
        if count >= self.minor:
            return "minor"
        return None

    def count(self, deployment: str) -> int:
        times = self._times.get(deployment)
        return len(times) if times else 0
