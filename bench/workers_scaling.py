#!/usr/bin/env python3
"""How ``lockgate serve --workers N`` scales per core, on a machine with fewer cores than a clean
measurement needs (issue 16: "report how --workers N scales per core").

    .venv/bin/python bench/workers_scaling.py                       # --workers 1 and 2, master key, 3 rounds
    .venv/bin/python bench/workers_scaling.py --workers 1 --workers 2 --virtual-key --rounds 4

On a 2-core machine the load generator and the upstream need a core too, so N workers cannot get N
cores of their own and requests/s alone says little.  What this measures instead is the work per
request: for each configuration (alternating rounds), nothing pinned, wrk at ``--connections`` for
``--seconds``, the CPU time of the gateway's whole process tree (the supervisor, every worker and,
without Redis, the counters service that shares the limits between workers) read from /proc before and
after (``--redis URL``: the counters in Redis, and the Redis server's CPU counted too).  Printed per round: requests/s, the cores the gateway used (CPU-seconds per second), requests/s
per core used (= 1e6 / µs of CPU per request), and at the end the medians and the per-core ratio of each
N against the first.  A per-core ratio of 1.0 means N workers do the same work per request as one:
given N free cores, the throughput would scale N times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int, redis_pids: list[int]) -> dict[str, float]:
    """CPU seconds of the gateway's process tree (the supervisor, the workers, the counters service) and,
    with ``--redis``, of the Redis server."""
    out = {"supervisor": 0.0, "workers": 0.0, "counters service": 0.0, "redis": 0.0}
    for pid in bench.tree_pids(root) + redis_pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        part = ("redis" if pid in redis_pids else "supervisor" if pid == root else
                "counters service" if b"counters_service" in cmdline else "workers")
        out[part] += (int(fields[11]) + int(fields[12])) / TICK  # utime + stime (all its threads)
    return out


def wrk(port: int, script: str, conns: int, seconds: int) -> dict:
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", script,
            f"http://{bench.HOST}:{port}/v1/chat/completions"]
    return bench.parse_wrk(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def one(args, procs: bench.Procs, workdir: str, workers: int) -> dict:
    config = os.path.join(workdir, "gateway-config.yaml")
    port = bench.free_port()
    argv = [args.lockgate_bin, "serve", "--config", config, "--host", bench.HOST, "--port", str(port),
            "--workers", str(workers)]
    env = dict(os.environ, REDIS_URL=args.redis) if args.redis else None
    redis_pids = [int(p) for p in subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True,
                                                 text=True).stdout.split()] if args.redis else []
    proc = procs.spawn(argv, os.path.join(workdir, "gateway.log"), env=env, cwd=workdir)
    try:
        if bench.wait_http_200(port, "/health/liveliness", 60, proc) is None:
            raise RuntimeError("the gateway did not start; see " + os.path.join(workdir, "gateway.log"))
        key = bench.virtual_key(port, f"bench-{port}") if args.virtual_key else bench.MASTER_KEY
        script = os.path.join(workdir, "request.lua")
        bench.write_lua(script, bench.request_body("bench-model", False), key)
        wrk(port, script, args.connections, 3)  # warm-up: every worker gets connections and caches the key
        cpu0, t0 = tree_cpu_seconds(proc.pid, redis_pids), time.monotonic()
        res = wrk(port, script, args.connections, args.seconds)
        cpu1, t1 = tree_cpu_seconds(proc.pid, redis_pids), time.monotonic()
    finally:
        procs.stop(proc)
    requests = max(1, res.get("requests") or 0)
    used = {part: cpu1[part] - cpu0[part] for part in cpu1}
    total = sum(used.values())
    return {"rps": res.get("rps") or 0.0, "cores": total / (t1 - t0), "cpu_us": total / requests * 1e6,
            "split_us": {part: v / requests * 1e6 for part, v in used.items() if v},
            "errors": res.get("errors", 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, action="append", help="worker counts to compare (default 1 and 2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--virtual-key", action="store_true", help="requests use a key made with /key/generate")
    ap.add_argument("--redis", metavar="URL",
                    help="shared mode: REDIS_URL for the gateway (the counters in Redis); the Redis server's CPU "
                         "(pgrep redis-server) is counted with the gateway's")
    ap.add_argument("--lockgate-bin", default=os.path.join(bench.REPO, ".venv", "bin", "lockgate"))
    args = ap.parse_args()
    counts = args.workers or [1, 2]
    workdir = tempfile.mkdtemp(prefix="lockgate-workers-")
    procs = bench.Procs(os.path.join(workdir, "pids"))
    results: dict[int, list[dict]] = {n: [] for n in counts}
    try:
        upstream = bench.free_port()
        bench.start_nginx(procs, workdir, upstream)
        for n in counts:
            os.makedirs(os.path.join(workdir, f"workers-{n}"))
            bench.write_gateway_config(os.path.join(workdir, f"workers-{n}", "gateway-config.yaml"), upstream)
        for r in range(args.rounds):
            for n in counts:
                res = one(args, procs, os.path.join(workdir, f"workers-{n}"), n)
                results[n].append(res)
                print(f"[round {r + 1}] --workers {n}: {res['rps']:8,.0f} req/s, {res['cores']:.2f} cores used, "
                      f"{res['rps'] / max(res['cores'], 1e-9):8,.0f} req/s per core, {res['cpu_us']:6.1f} µs CPU "
                      f"per request (" + ", ".join(f"{k} {v:.1f}" for k, v in res["split_us"].items()) + ")"
                      + (f", {res['errors']} errors" if res["errors"] else ""), flush=True)
                time.sleep(0.5)
    finally:
        procs.stop_all()
    base = statistics.median(x["rps"] / max(x["cores"], 1e-9) for x in results[counts[0]])
    print("\nmedians:")
    for n in counts:
        per_core = statistics.median(x["rps"] / max(x["cores"], 1e-9) for x in results[n])
        print(f"  --workers {n}: {statistics.median(x['rps'] for x in results[n]):8,.0f} req/s, "
              f"{statistics.median(x['cores'] for x in results[n]):.2f} cores, {per_core:8,.0f} req/s per core "
              f"({per_core / base:.2f}× --workers {counts[0]}'s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
