"""Time the admin UI's data queries on a database seeded by bench/ui_seed.py (SQLite or PostgreSQL).

    python bench/ui_queries.py sqlite:////tmp/ui-scale.db [--runs 3]
    python bench/ui_queries.py postgresql://postgres@127.0.0.1:5432/ui_scale

Prints the median of ``--runs`` runs of each query (after one warm-up run), as an admin and as an internal
user (user-5: 1/1000 of the rows), the page a browser would load.  ``--raw``: breakdowns by key, team, user
and tag ignore ``spend_daily`` (what they cost before it, for a ratio on the same machine and data).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from lockgate.admin.auth import Caller
from lockgate.ui.data import audit, logs, overview, usage, zones


async def timed(runs: int, fn: Callable[[], Awaitable[Any]]) -> float:
    await fn()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tz", default="Europe/Paris")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    parser.add_argument("--raw", action="store_true",
                        help="ignore spend_daily: breakdowns by key, team, user and tag read every spend row")
    args = parser.parse_args()
    if args.raw:
        from lockgate.ui.data import daily

        async def nothing_stored(*_args: Any, **_kw: Any) -> set[str]:
            return set()

        daily.trusted_days = nothing_stored  # type: ignore[assignment]

    from lockgate.state import open_store

    store = await open_store(SimpleNamespace(database_url=args.url, database_path=None, max_budget=None,
                                             budget_duration=None), None)
    tz = zones.zone(args.tz)
    today = zones.today(tz)
    callers = {"admin": Caller(id="master", role="proxy_admin"),
               "internal user": Caller(id="user-5", role="internal_user", user_id="user-5")}
    last_week = datetime.now(UTC) - timedelta(days=7)

    async def logs_page_3(caller: Caller) -> None:
        first = await logs.page(store, caller, logs.LogFilters())
        second = await logs.page(store, caller, logs.LogFilters(), first.next_cursor)
        await logs.page(store, caller, logs.LogFilters(), second.next_cursor)

    async def csv_all(caller: Caller, group_by: str | None) -> None:
        async for _ in usage.csv_lines(store, caller, usage.UsageQuery(today - timedelta(days=29), today, tz,
                                                                       group_by)):
            pass

    try:
        for who, caller in callers.items():
            cases: dict[str, Callable[[], Awaitable[Any]]] = {
                "overview (today, 7, 30 days)": lambda c=caller: overview.periods(store, c, tz),
                "usage 30 days, per day": lambda c=caller: usage.usage(
                    store, c, usage.UsageQuery(today - timedelta(days=29), today, tz)),
                "usage 7 days, by key (top 10)": lambda c=caller: usage.usage(
                    store, c, usage.UsageQuery(today - timedelta(days=6), today, tz, "key")),
                "usage 30 days, by key (top 10)": lambda c=caller: usage.usage(
                    store, c, usage.UsageQuery(today - timedelta(days=29), today, tz, "key")),
                "usage 30 days, by team": lambda c=caller: usage.usage(
                    store, c, usage.UsageQuery(today - timedelta(days=29), today, tz, "team")),
                "usage 7 days, by user": lambda c=caller: usage.usage(
                    store, c, usage.UsageQuery(today - timedelta(days=6), today, tz, "user")),
                "usage 30 days, by user": lambda c=caller: usage.usage(
                    store, c, usage.UsageQuery(today - timedelta(days=29), today, tz, "user")),
                "usage 30 days, by model": lambda c=caller: usage.usage(
                    store, c, usage.UsageQuery(today - timedelta(days=29), today, tz, "model")),
                "usage 30 days, by tag": lambda c=caller: usage.usage(
                    store, c, usage.UsageQuery(today - timedelta(days=29), today, tz, "tag")),
                "usage CSV 30 days, per day and model": lambda c=caller: csv_all(c, "model"),
                "logs: first page (50)": lambda c=caller: logs.page(store, c, logs.LogFilters()),
                "logs: pages 1-3 by cursor": lambda c=caller: logs_page_3(c),
                "logs: filter key": lambda c=caller: logs.page(store, c, logs.LogFilters(key="f" * 64)),
                "logs: filter team, errors, last 7 days": lambda c=caller: logs.page(
                    store, c, logs.LogFilters(team_id="team-7", status="error", start=last_week)),
                "logs: filter rare model (none)": lambda c=caller: logs.page(
                    store, c, logs.LogFilters(model="model-none")),
                "logs: detail": lambda c=caller: logs.detail(store, c, "seed-00999999"),
            }
            if caller.reads_all:
                cases["audit: first page"] = lambda c=caller: audit.page(store, c, audit.AuditFilters())
            for name, fn in cases.items():
                if args.only not in name:
                    continue
                print(f"{store.dialect:10} {who:13} {name:40} {await timed(args.runs, fn):9.1f} ms", flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
