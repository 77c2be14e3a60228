#!/usr/bin/env python3
"""CPU time and context switches per request, per thread of the gateway: the rig behind
docs/performance.md "Where the time goes".

    .venv/bin/python bench/cpu_per_request.py                        # this checkout, 3 rounds
    .venv/bin/python bench/cpu_per_request.py --config A.yaml --config B.yaml --rounds 4
    .venv/bin/python bench/cpu_per_request.py --connections 1 --virtual-key
    .venv/bin/python bench/cpu_per_request.py --stream --lockgate-bin /path/to/other/lockgate
    .venv/bin/python bench/cpu_per_request.py --lockgate-bin A/lockgate --lockgate-bin B/lockgate  # A/B
    .venv/bin/python bench/cpu_per_request.py --env '' --env 'LOCKGATE_X=1'   # the same build, two environments

Starts the fixed-response nginx of bench.py, then for each round and each configuration (alternating,
so that the VM's drift hits every configuration alike): starts ``lockgate serve`` pinned to core 0,
warms it up, reads every thread's utime+stime and context switches from /proc, runs wrk on core 1,
reads them again and prints requests/s, wrk's p50/p99, and per thread: µs of CPU, voluntary and
involuntary switches per request.  A configuration file is a LiteLLM-format config whose
``__UPSTREAM__`` is replaced with the nginx port (default: bench.py's own config).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> dict[int, tuple[str, int, int, int]]:
    """tid -> (name, CPU ticks, voluntary, involuntary switches)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        out[int(tid)] = (name, int(fields[11]) + int(fields[12]), int(status["voluntary_ctxt_switches"]),
                         int(status["nonvoluntary_ctxt_switches"]))
    return out


def wrk(port: int, script: str, conns: int, seconds: int) -> dict:
    argv = ["taskset", "-c", bench.LOAD_CORE, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
            "-s", script, f"http://{bench.HOST}:{port}/v1/chat/completions"]
    return bench.parse_wrk(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def one(args, procs: bench.Procs, workdir: str, config: str, binary: str, env: str) -> str:
    port = bench.free_port()
    argv = ["taskset", "-c", bench.GW_CORE, binary, "serve", "--config", config,
            "--host", bench.HOST, "--port", str(port), "--workers", "1"]
    environ = dict(os.environ, **dict(pair.split("=", 1) for pair in env.split(",") if pair))
    proc = procs.spawn(argv, os.path.join(workdir, "gateway.log"), env=environ, cwd=workdir)
    try:
        if bench.wait_http_200(port, "/health/liveliness", 30, proc) is None:
            raise RuntimeError("the gateway did not start; see " + os.path.join(workdir, "gateway.log"))
        key = bench.virtual_key(port, f"bench-{port}") if args.virtual_key else bench.MASTER_KEY  # a database per build
        script = os.path.join(workdir, "request.lua")
        model = "bench-stream" if args.stream else "bench-model"
        bench.write_lua(script, bench.request_body(model, args.stream), key)
        wrk(port, script, args.warmup_connections or args.connections, 3)  # warm-up
        before = threads(proc.pid)
        res = wrk(port, script, args.connections, args.seconds)
        after = threads(proc.pid)
    finally:
        procs.stop(proc)
    n = max(1, res.get("requests") or 0)
    label = " ".join(part for part in (os.path.basename(config), binary if len(args.lockgate_bin) > 1 else "",
                                        env) if part)
    line = [f"{label:28s} {res.get('rps', 0):8,.0f} req/s  p50 {res.get('p50_ms', 0):.3f}"
            f"  p99 {res.get('p99_ms', 0):.3f} ms"]
    for tid, (name, ticks, vol, invol) in sorted(after.items()):
        if tid not in before:
            continue
        cpu_us = (ticks - before[tid][1]) / TICK * 1e6 / n
        if tid == proc.pid:
            name += " (event loop)"
        if cpu_us >= 0.5:
            line.append(f"    {name:24s} {cpu_us:7.1f} µs  {(vol - before[tid][2]) / n:6.3f} vcs"
                        f"  {(invol - before[tid][3]) / n:6.3f} ivcs per request")
    return "\n".join(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", help="config file(s) to compare; __UPSTREAM__ = nginx port")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--warmup-connections", type=int,
                    help="connections of the 3 s warm-up (default: --connections; bench.py warms up at 32)")
    ap.add_argument("--virtual-key", action="store_true", help="requests use a key made with /key/generate")
    ap.add_argument("--stream", action="store_true", help="streamed requests (the bench-stream model's SSE answer)")
    ap.add_argument("--lockgate-bin", action="append",
                    help="lockgate executable(s) to compare (default: this checkout's .venv)")
    ap.add_argument("--env", action="append", help="environment variant(s) to compare: NAME=VALUE[,NAME=VALUE]")
    args = ap.parse_args()
    args.lockgate_bin = args.lockgate_bin or [os.path.join(bench.REPO, ".venv", "bin", "lockgate")]
    workdir = tempfile.mkdtemp(prefix="lockgate-cpu-")
    procs = bench.Procs(os.path.join(workdir, "pids"))
    try:
        upstream = bench.free_port()
        bench.start_nginx(procs, workdir, upstream)
        runs = []  # (config, binary, environment), each in its own directory (its own database)
        for i, (path, binary, env) in enumerate(itertools.product(args.config or [None], args.lockgate_bin,
                                                                  args.env or [""])):
            target = os.path.join(workdir, f"config-{i}", os.path.basename(path) if path else "gateway-config.yaml")
            os.makedirs(os.path.dirname(target))
            if path is None:
                bench.write_gateway_config(target, upstream)
            else:
                with open(path) as f:
                    text = re.sub("__UPSTREAM__", str(upstream), f.read())
                with open(target, "w") as f:
                    f.write(text)
            runs.append((target, binary, env))
        for r in range(args.rounds):
            for config, binary, env in runs:
                print(f"[round {r + 1}] " + one(args, procs, os.path.dirname(config), config, binary, env), flush=True)
                time.sleep(0.5)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
