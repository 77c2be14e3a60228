"""Lockgate against TensorZero in alternating rounds: the issue-16 ratios with their spread.

    .venv/bin/python bench/peer_rounds.py --rounds 5 --seconds 6 [--virtual-key]

One ``bench/run.sh`` run measures each gateway once, one after the other, so a burst of the VM's noise
lands on one of them and moves the ratio (TensorZero's own req/s ranged 2,977-5,256 between the runs of
session 11).  Here both gateways (and nginx, measured directly) stay up and are measured in turn, round
after round, with the same wrk phases as bench.py: latency at one connection, then throughput at
``--connections``; each round prints its ratios, the end their medians.  It complements bench/run.sh (which
also measures streams, memory and start-up) and needs its TensorZero venv (run.sh makes it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import bench

TARGETS = ("direct", "lockgate", "tensorzero")


def start(target: str, args: argparse.Namespace, procs: bench.Procs, workdir: str, config: str,
          upstream: int) -> tuple[int, str, str | None]:
    """(port, path, key) of a started gateway."""
    port = bench.free_port()
    argv, env = bench.gateway_argv(target, args, config, port, upstream)
    proc = procs.spawn(argv, os.path.join(workdir, f"{target}.log"), env=env, cwd=workdir)
    if target == "tensorzero":
        found = bench.wait_port_file(os.path.join(workdir, "tensorzero.port"), args.startup_timeout, proc)
        if found is None or bench.wait_http_200(found, bench.TZ_PATH, args.startup_timeout, proc, ok=(405,)) is None:
            raise RuntimeError("tensorzero did not start; see " + os.path.join(workdir, "tensorzero.log"))
        return found, bench.TZ_PATH, None
    if bench.wait_http_200(port, "/health/liveliness", args.startup_timeout, proc) is None:
        raise RuntimeError("lockgate did not start; see " + os.path.join(workdir, "lockgate.log"))
    key = bench.virtual_key(port) if args.virtual_key else bench.MASTER_KEY
    return port, "/v1/chat/completions", key


def measure(url: str, script: str, args: argparse.Namespace, log: str) -> dict[str, float]:
    one = bench.run_wrk(url, script, 1, f"{args.seconds}s", log)
    many = bench.run_wrk(url, script, args.connections, f"{args.seconds}s", log)
    return {"p50": one["p50_ms"], "p99": one["p99_ms"], "rps": many["rps"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--virtual-key", action="store_true", help="Lockgate's requests use a key with every limit")
    ap.add_argument("--startup-timeout", type=float, default=180)
    ap.add_argument("--lockgate-bin", default=os.path.join(bench.REPO, ".venv", "bin", "lockgate"))
    ap.add_argument("--tensorzero-python", default=os.environ.get(
        "TENSORZERO_PYTHON", os.path.join(bench.HERE, ".tensorzero-venv", "bin", "python")))
    args = ap.parse_args()
    if not os.path.exists(args.tensorzero_python):
        print(f"{args.tensorzero_python} is missing: run bench/run.sh --with-tensorzero once", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {int(bench.LOAD_CORE)})
    workdir = tempfile.mkdtemp(prefix="lockgate-peers-")
    procs = bench.Procs(os.path.join(workdir, "pids"))
    rows: list[dict[str, float]] = []
    try:
        upstream = bench.free_port()
        bench.start_nginx(procs, workdir, upstream)
        config = os.path.join(workdir, "gateway-config.yaml")
        bench.write_gateway_config(config, upstream)
        bench.write_tensorzero_config(os.path.join(workdir, "tensorzero.toml"), upstream)
        scripts: dict[str, str] = {}
        urls: dict[str, str] = {"direct": f"http://{bench.HOST}:{upstream}/v1/chat/completions"}
        bench.write_lua(scripts.setdefault("direct", os.path.join(workdir, "direct.lua")),
                        bench.request_body("bench-model", False), None)
        for target in TARGETS[1:]:
            port, path, key = start(target, args, procs, workdir, config, upstream)
            urls[target] = f"http://{bench.HOST}:{port}{path}"
            model = (bench.TZ_MODEL_PREFIX if target == "tensorzero" else "") + "bench-model"
            scripts[target] = os.path.join(workdir, f"{target}.lua")
            bench.write_lua(scripts[target], bench.request_body(model, False), key)
            bench.run_wrk(urls[target], scripts[target], args.connections, "3s", os.path.join(workdir, "warmup.log"))
        for r in range(args.rounds):
            order = TARGETS if r % 2 == 0 else (TARGETS[0], *reversed(TARGETS[1:]))
            got = {t: measure(urls[t], scripts[t], args, os.path.join(workdir, f"wrk-{t}.log")) for t in order}
            d, lg, tz = got["direct"], got["lockgate"], got["tensorzero"]
            row = {"rps": lg["rps"] / tz["rps"],
                   "p50": (lg["p50"] - d["p50"]) / (tz["p50"] - d["p50"]),
                   "p99": (lg["p99"] - d["p99"]) / (tz["p99"] - d["p99"])}
            rows.append(row)
            print(f"[round {r + 1}] req/s {lg['rps']:,.0f} / {tz['rps']:,.0f} = {row['rps']:.2f}   "
                  f"added p50 {lg['p50'] - d['p50']:+.3f} / {tz['p50'] - d['p50']:+.3f} = {row['p50']:.2f}   "
                  f"added p99 {lg['p99'] - d['p99']:+.3f} / {tz['p99'] - d['p99']:+.3f} = {row['p99']:.2f}",
                  flush=True)
            time.sleep(0.5)
    finally:
        procs.stop_all()
    print("medians (Lockgate / TensorZero): " + "   ".join(
        f"{name} {statistics.median(r[key] for r in rows):.2f}"
        for name, key in (("req/s", "rps"), ("added p50", "p50"), ("added p99", "p99"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
