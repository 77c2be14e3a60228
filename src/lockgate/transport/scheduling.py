"""How the upstream client's I/O thread is scheduled next to the event loop (Linux).

pyreqwest runs the connections to providers on its own (tokio) thread.  When that thread and the
event loop share a core, each of its wake-ups (a request handed over, an answer arrived) preempts the
loop: ~1.3 context switches per request at 32 connections on one core.  As ``SCHED_BATCH`` it no
longer preempts on wake-up; it runs when the loop waits or its time slice is due, and handles several
requests per turn (~0.05 switches per request, 20-30 % more requests/s on one core, measured in
docs/performance.md).  With one request at a time the opposite holds (the loop then waits for it:
+60 µs per request), so the policy follows the load: ``SCHED_BATCH`` while at least ``busy_at``
requests were in flight at once during the last ``period``, the normal policy otherwise.  Both
policies are open to unprivileged processes; with a free core the choice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger("lockgate")

PERIOD = 0.1  # seconds between decisions


def set_policy(thread_name: str, batch: bool) -> int:
    """``SCHED_BATCH`` (or back to ``SCHED_OTHER``) for this process's threads named ``thread_name*``;
    returns how many were changed."""
    policy = os.SCHED_BATCH if batch else os.SCHED_OTHER
    changed = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if not f.read().startswith(thread_name):
                    continue
            os.sched_setscheduler(int(tid), policy, os.sched_param(0))
            changed += 1
        except (OSError, ValueError):
            continue
    return changed


class IOThreadPolicy:
    """Counts upstream requests in flight (``enter``/``leave``) and sets the I/O thread's policy."""

    def __init__(self, busy_at: int, thread_name: str = "pyreqwest", period: float = PERIOD) -> None:
        self.enabled = busy_at > 0 and hasattr(os, "SCHED_BATCH") and os.path.isdir("/proc/self/task")
        self.busy_at = busy_at
        self.thread_name = thread_name
        self.period = period
        self.inflight = 0
        self.peak = 0  # most requests in flight at once since the last decision
        self.batch = False
        self._timer: asyncio.TimerHandle | None = None

    def enter(self) -> None:
        self.inflight += 1
        if self.inflight > self.peak:
            self.peak = self.inflight
            if self._timer is None and self.enabled:
                self._timer = asyncio.get_running_loop().call_later(self.period, self._decide)

    def leave(self) -> None:
        self.inflight -= 1

    def _decide(self) -> None:
        busy = self.peak >= self.busy_at
        if busy != self.batch:
            self.batch = busy
            if not set_policy(self.thread_name, busy):
                log.debug("no %s thread to schedule", self.thread_name)
        self.peak = self.inflight
        # keep deciding while there is traffic or the thread is still batched; idle: no timer
        self._timer = (asyncio.get_running_loop().call_later(self.period, self._decide)
                       if self.inflight or self.batch else None)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
