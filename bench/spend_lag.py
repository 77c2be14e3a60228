#!/usr/bin/env python3
"""How far the embedded database's spend rows trail the requests, under load.

    .venv/bin/python bench/spend_lag.py                      # 32 connections, 8 s
    .venv/bin/python bench/spend_lag.py --connections 1 --seconds 5
    .venv/bin/python bench/spend_lag.py --lockgate-bin /path/to/other/lockgate

Starts bench.py's fixed-response nginx and ``lockgate serve`` pinned to core 0 (SQLite, the embedded
default), runs wrk on core 1 and, every 0.25 s meanwhile, reads the newest ``spend_logs.end_time``
from the database file (a WAL reader: it never blocks the writer).  Prints the lag (now minus the
newest row) at each sample, its maximum, and after the load how long the writer took until every
request wrk counted has its row.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402


def newest(db: str) -> tuple[int, float | None]:
    """(rows, seconds since the newest row's end_time)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        count, end = conn.execute("SELECT count(*), max(end_time) FROM spend_logs").fetchone()
    finally:
        conn.close()
    if end is None:
        return count, None
    then = datetime.fromisoformat(end).replace(tzinfo=UTC).timestamp()
    return count, time.time() - then


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--lockgate-bin", default=os.path.join(bench.REPO, ".venv", "bin", "lockgate"))
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="lockgate-lag-")
    procs = bench.Procs(os.path.join(workdir, "pids"))
    try:
        upstream = bench.free_port()
        bench.start_nginx(procs, workdir, upstream)
        config = os.path.join(workdir, "gateway-config.yaml")
        bench.write_gateway_config(config, upstream)
        port = bench.free_port()
        argv = ["taskset", "-c", bench.GW_CORE, args.lockgate_bin, "serve", "--config", config,
                "--host", bench.HOST, "--port", str(port), "--workers", "1"]
        proc = procs.spawn(argv, os.path.join(workdir, "gateway.log"), cwd=workdir)
        if bench.wait_http_200(port, "/health/liveliness", 30, proc) is None:
            raise RuntimeError("the gateway did not start; see " + os.path.join(workdir, "gateway.log"))
        db = os.path.join(workdir, "lockgate.db")
        script = os.path.join(workdir, "request.lua")
        bench.write_lua(script, bench.request_body("bench-model", False), bench.MASTER_KEY)
        before, _ = newest(db)
        result: dict = {}
        load = threading.Thread(target=lambda: result.update(bench.run_wrk(
            f"http://{bench.HOST}:{port}/v1/chat/completions", script, args.connections, f"{args.seconds}s",
            os.path.join(workdir, "wrk.log"))))
        load.start()
        lags = []
        while load.is_alive():
            time.sleep(0.25)
            rows, lag = newest(db)
            if lag is not None:
                lags.append(lag)
                print(f"  rows {rows - before:8,d}  lag {lag * 1000:8.1f} ms", flush=True)
        load.join()
        ended = time.monotonic()
        expected = before + result.get("requests", 0)
        while newest(db)[0] < expected and time.monotonic() - ended < 30:
            time.sleep(0.01)
        drained = time.monotonic() - ended
        rows = newest(db)[0] - before
        print(f"{result.get('rps', 0):,.0f} req/s; max lag {max(lags, default=0) * 1000:.0f} ms; "
              f"{rows:,d} rows for {result.get('requests', 0):,d} requests, all in "
              f"{drained * 1000:.0f} ms after the load ended")
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
