"""Seed a Lockgate database for the UI scale measurements: 100k keys and 1M spend rows by default.

    python bench/ui_seed.py sqlite:////tmp/ui-scale.db [--keys 100000] [--rows 1000000] [--days 30]
    python bench/ui_seed.py postgresql://postgres@127.0.0.1:5432/ui_scale

The schema comes from Lockgate's own migrations (``open_store``); rows go in with the drivers' bulk paths
(one ``executemany`` transaction on SQLite, ``COPY`` on PostgreSQL), then ``spend_rollup`` is filled from them
with the migration's own backfill query (the gateway's spend writer keeps it as it writes; ~1.5 minutes on a
2-core machine); last, one round of the gateway's ``spend_daily`` job (``ui/data/daily.py``, then
``ui/data/windows.py``) for the zones of ``--tz``, as a running gateway does within a few minutes of start-up
(``--jobs-only``: just that round, on a database seeded before).  Rows are spread evenly over the last
``--days`` days (so the 30-day overview reads every row), over 1,000 users, 200 teams, 20 model groups and
5 tags; 2% are errors.  Deterministic (seeded random), so two runs build the same data.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from lockgate.state import rollup

MODELS = [f"model-{i:02d}" for i in range(20)]
TAGS = ["prod", "staging", "batch", "chat", "eval"]


def key_hash(i: int) -> str:
    return hashlib.sha256(f"sk-seed-{i}".encode()).hexdigest()


def key_rows(count: int, now: datetime) -> list[tuple]:
    rows = []
    for i in range(count):
        rows.append((key_hash(i), f"sk-...{i % 10000:04d}", f"key-{i}", f"user-{i % 1000}", f"team-{i % 200}",
                     now, now))
    return rows


def spend_rows(count: int, keys: int, days: int, now: datetime, rnd: random.Random) -> list[tuple]:
    span = days * 86400.0
    start = now - timedelta(days=days)
    hashes = [key_hash(i) for i in range(keys)]
    rows = []
    for i in range(count):
        k = rnd.randrange(keys)
        t = start + timedelta(seconds=span * i / count)
        latency = rnd.uniform(0.2, 3.0)
        prompt, completion = rnd.randrange(10, 2000), rnd.randrange(1, 800)
        status = 200 if rnd.random() > 0.02 else rnd.choice((429, 500, 502))
        meta = {"stream": i % 3 == 0, "key_alias": f"key-{k}", "tags": [TAGS[i % 5]]}
        if meta["stream"]:
            meta["ttft_ms"] = round(latency * 300, 3)
        rows.append((f"seed-{i:08d}", hashes[k], f"user-{k % 1000}", f"team-{k % 200}", None, None,
                     MODELS[k % 20], MODELS[k % 20], f"dep-{k % 20}", "openai", "chat", prompt, completion, 0,
                     (prompt * 1e-6 + completion * 3e-6) if status == 200 else 0.0, status,
                     t, t + timedelta(seconds=latency), json.dumps(meta)))
    return rows


def sqlite_text(t: datetime) -> str:
    return t.replace(tzinfo=None).isoformat(" ", "microseconds")


KEY_COLUMNS = ("token_hash", "key_name", "key_alias", "user_id", "team_id", "created_at", "updated_at")
SPEND_COLUMNS = ("request_id", "api_key", "user_id", "team_id", "organization_id", "end_user", "model_group", "model",
                 "deployment_id", "provider", "route", "prompt_tokens", "completion_tokens", "cached_tokens",
                 "spend", "status", "start_time", "end_time", "metadata")


def seed_sqlite(path: str, keys: list[tuple], spend: list[tuple]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    key_sql = (f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}, spend, models, blocked, metadata, model_max_budget,"
               " model_rpm_limit, model_tpm_limit, allowed_routes, allowed_ips) VALUES"
               f" ({', '.join('?' * len(KEY_COLUMNS))}, 0, '[]', 0, '{{}}', '{{}}', '{{}}', '{{}}', '[]', '[]')")
    with conn:
        conn.executemany(key_sql, [(*r[:5], sqlite_text(r[5]), sqlite_text(r[6])) for r in keys])
        conn.executemany(
            f"INSERT INTO spend_logs ({', '.join(SPEND_COLUMNS)}) VALUES ({', '.join('?' * len(SPEND_COLUMNS))})",
            [(*r[:16], sqlite_text(r[16]), sqlite_text(r[17]), r[18]) for r in spend])
        conn.execute("DELETE FROM spend_rollup")
        conn.execute(rollup.BACKFILL["sqlite"])
    conn.execute("ANALYZE")
    conn.close()


async def seed_postgres(url: str, keys: list[tuple], spend: list[tuple]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        naive = [(*r[:5], r[5].replace(tzinfo=None), r[6].replace(tzinfo=None), 0.0, "[]", False, "{}", "{}", "{}",
                  "{}", "[]", "[]") for r in keys]
        await conn.copy_records_to_table(
            "keys", records=naive,
            columns=[*KEY_COLUMNS, "spend", "models", "blocked", "metadata", "model_max_budget", "model_rpm_limit",
                     "model_tpm_limit", "allowed_routes", "allowed_ips"])
        await conn.copy_records_to_table(
            "spend_logs", records=[(*r[:16], r[16].replace(tzinfo=None), r[17].replace(tzinfo=None), r[18])
                                   for r in spend], columns=list(SPEND_COLUMNS))
        await conn.execute("DELETE FROM spend_rollup")
        await conn.execute(rollup.BACKFILL["postgresql"])
        await conn.execute("VACUUM ANALYZE spend_logs")
        await conn.execute("VACUUM ANALYZE keys")
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="sqlite:////path/file.db or postgresql://user@host:port/database (empty)")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tz", default="UTC,Europe/Paris",
                        help="the zones whose closed days spend_daily gets after seeding (comma-separated)")
    parser.add_argument("--jobs-only", action="store_true",
                        help="only the round of the spend_daily job, on a database seeded before")
    args = parser.parse_args()
    zone_names = [name for name in args.tz.split(",") if name]
    if args.jobs_only:
        await materialise(args.url, zone_names)
        return

    from lockgate.state import open_store

    store = await open_store(SimpleNamespace(database_url=args.url, database_path=None, max_budget=None,
                                             budget_duration=None), None)
    await store.close()
    now = datetime.now(UTC)
    rnd = random.Random(15)
    began = time.perf_counter()
    keys = key_rows(args.keys, now)
    spend = spend_rows(args.rows, args.keys, args.days, now, rnd)
    built = time.perf_counter()
    if args.url.startswith("sqlite"):
        seed_sqlite(args.url.split(":///", 1)[1], keys, spend)
    else:
        await seed_postgres(args.url.replace("postgresql+asyncpg://", "postgresql://"), keys, spend)
    print(f"seeded {len(keys)} keys and {len(spend)} spend rows over {args.days} days: built in "
          f"{built - began:.1f} s, inserted in {time.perf_counter() - built:.1f} s")
    await materialise(args.url, zone_names)


async def materialise(url: str, zone_names: list[str]) -> None:
    """One round of the gateway's spend_daily job (ui/data/daily.py) per zone: every closed day of the last 35,
    then the windows of closed days by key (ui/data/windows.py)."""
    from lockgate.state import open_store
    from lockgate.ui.data import daily, windows, zones

    store = await open_store(SimpleNamespace(database_url=url, database_path=None, max_budget=None,
                                             budget_duration=None), None)
    try:
        for name in zone_names:
            began = time.perf_counter()
            done = await daily.refresh(store, zones.zone(name))
            took = time.perf_counter() - began
            print(f"spend_daily, {name}: {done} closed days materialised in {took:.1f} s"
                  f" ({took / max(done, 1) * 1000:.0f} ms a day)", flush=True)
            began = time.perf_counter()
            built = await windows.refresh(store, zones.zone(name))
            print(f"spend_window, {name}: {built} windows of closed days by key built in"
                  f" {time.perf_counter() - began:.1f} s", flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
