"""What the admin UI's spend reads (migration 0005: the (user_id, start_time) index and spend_rollup, summed
by the spend writer per batch) cost the spend writer.

    python bench/ui_write_cost.py [--rows 20000] [--postgres postgresql://postgres@127.0.0.1:5432/test]

Builds two fresh databases per backend at the head revision: ``without`` has the index dropped and the
writer's rollup sums turned off (what the writer did before 0005), ``with`` is as shipped; applies the same
records through ``SQLStore.apply_spend`` in the writer's batch sizes (32-row chunks on the embedded SQLite's
loop path, 500-row batches on PostgreSQL); prints the median wall time and this (the gateway's) process's
CPU time per record over ``--runs`` interleaved runs.  Each database starts with
``--rows`` rows already in it so the indexes are not empty.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import text

from lockgate.governance.types import SpendRecord
from lockgate.state import migrate, rollup
from lockgate.state.db import create_engine, normalize_url
from lockgate.state.store import SQLStore
from lockgate.state.timetext import utc_text


def records(n: int, prefix: str) -> list[SpendRecord]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        t = now - timedelta(seconds=n - i)
        out.append(SpendRecord(f"{prefix}-{i}", f"{i % 997:064x}", f"user-{i % 101}", f"team-{i % 13}", None, None,
                               f"model-{i % 7}", "m", "d", "openai", "chat", 100, 50, 0, 0.001, 200, utc_text(t),
                               utc_text(t + timedelta(milliseconds=700)),
                               orjson.dumps({"stream": True, "key_alias": "k", "ttft_ms": 120.5}).decode()))
    return out


async def measure(url: str, ui_reads: bool, rows: int, batch: int) -> tuple[float, float]:
    """(wall µs, this process's CPU µs) per record, applying ``rows`` records onto ``rows`` already there."""
    engine = create_engine(normalize_url(url))
    batch_sums = rollup.batch
    try:
        await migrate.upgrade(engine)
        if not ui_reads:
            async with engine.begin() as conn:
                await conn.execute(text("DROP INDEX ix_spend_logs_user_id_start_time"))
            rollup.batch = lambda records: []  # type: ignore[assignment]  # the writer as before 0005
        store = SQLStore(engine)
        warm = records(rows, "warm")
        for i in range(0, len(warm), 500):
            await store.apply_spend(warm[i:i + 500], fresh=True)
        timed = records(rows, "timed")
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(timed), batch):
            await store.apply_spend(timed[i:i + batch], fresh=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await store.close()
        return wall / len(timed) * 1e6, cpu / len(timed) * 1e6
    finally:
        rollup.batch = batch_sums
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    import asyncpg

    results: dict[str, list[tuple[float, float]]] = {}
    base = args.postgres.rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):  # interleaved: a loaded machine's drift hits every variant alike
            for ui_reads, label in ((False, "without"), (True, "with   ")):
                url = f"sqlite:///{os.path.join(tmp, f'{label.strip()}-{run}.db')}"
                results.setdefault(f"sqlite     {label}", []).append(
                    await measure(url, ui_reads, args.rows, 32))
                name = f"ui_cost_{uuid.uuid4().hex[:8]}"
                admin = await asyncpg.connect(args.postgres)
                await admin.execute(f'CREATE DATABASE "{name}"')
                try:
                    results.setdefault(f"postgresql {label}", []).append(
                        await measure(f"{base}/{name}", ui_reads, args.rows, 500))
                finally:
                    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                    await admin.close()
    for label, samples in sorted(results.items()):
        walls, cpus = sorted(s[0] for s in samples), sorted(s[1] for s in samples)
        print(f"{label}: wall {walls[len(walls) // 2]:6.1f} µs, gateway-process CPU {cpus[len(cpus) // 2]:6.1f} µs"
              " per record (median)")


if __name__ == "__main__":
    asyncio.run(main())
