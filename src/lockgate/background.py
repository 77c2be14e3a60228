"""Background tasks a component owns, stopped together when it closes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def stop(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then wait for each to end.  What a task raises while it stops is not
    re-raised: each loop logs its own failures while it runs, and closing must go on."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
