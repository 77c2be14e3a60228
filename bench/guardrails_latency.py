#!/usr/bin/env python3
"""What a feature adds to a request: Lockgate without it against Lockgate with it, in front of bench.py's
fixed-response nginx, one connection, a 1 KB prompt holding one e-mail address.  Features:

* ``pii`` (default): the ``pii-mask`` guardrail (presidio, pre_call, EMAIL_ADDRESS and PHONE_NUMBER masked,
  output_parse_pii);
* ``otel``: OpenTelemetry traces (``callbacks: ["otel"]``) exported over OTLP/HTTP to a sink that answers
  200 (a thread of this script, on the load core).

    .venv/bin/python bench/guardrails_latency.py [--feature pii|otel] [--requests 400] [--rounds 3]

Each round starts both gateways (pinned to core 0, the client and nginx on core 1) and times, alternating
configurations, ``--requests`` sequential non-streamed requests (p50 / p99 of the whole request) and
``--requests // 4`` streamed ones (time to the first content byte, p50 / p99).  Prints the figures and the
differences guarded - unguarded of each round (the machine's speed cancels out of the difference).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402

PROMPT = ("Please draft a short reply to the customer below and keep the tone friendly. " * 11)[:900] + \
    " The customer wrote from jane.roe@example.com and asked about the refund for order 18274."
GUARD = """guardrails:
  - guardrail_name: pii-mask
    litellm_params:
      guardrail: presidio
      mode: pre_call
      default_on: true
      output_parse_pii: true
      pii_entities_config: {EMAIL_ADDRESS: MASK, PHONE_NUMBER: MASK}
"""


OTEL = "litellm_settings: {callbacks: [otel]}\n"


def otlp_sink() -> int:
    """An OTLP/HTTP endpoint that accepts every export (the collector's cost is not the gateway's)."""
    import http.server
    import threading

    class Sink(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((bench.HOST, 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def start(procs: bench.Procs, workdir: str, name: str, upstream: int, feature: str | None,
          env: dict[str, str] | None = None) -> int:
    config = os.path.join(workdir, f"{name}.yaml")
    bench.write_gateway_config(config, upstream)
    if feature is not None:
        with open(config, "a") as f:
            f.write(GUARD if feature == "pii" else OTEL)
    port = bench.free_port()
    lockgate = os.environ.get("LOCKGATE_BIN", os.path.join(os.path.dirname(HERE), ".venv", "bin", "lockgate"))
    proc = procs.spawn(["taskset", "-c", bench.GW_CORE, lockgate, "serve", "--config", config, "--port", str(port)],
                       os.path.join(workdir, f"{name}.log"), env={**os.environ, **(env or {})})
    if bench.wait_http_200(port, "/health/liveliness", 60, proc) is None:
        with open(os.path.join(workdir, f"{name}.log")) as log:
            raise RuntimeError(log.read())
    return port


def measure(port: int, requests: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {bench.MASTER_KEY}"}
    body = {"model": "bench-model", "messages": [{"role": "user", "content": PROMPT}]}
    with httpx.Client(base_url=f"http://{bench.HOST}:{port}", headers=headers, timeout=10) as client:
        for _ in range(50):  # warm-up
            client.post("/v1/chat/completions", json=body).raise_for_status()
        whole = []
        for _ in range(requests):
            t = time.perf_counter()
            client.post("/v1/chat/completions", json=body).raise_for_status()
            whole.append((time.perf_counter() - t) * 1000)
        first = []
        for _ in range(max(20, requests // 4)):
            t = time.perf_counter()
            with client.stream("POST", "/v1/chat/completions",
                               json={**body, "model": "bench-stream", "stream": True}) as resp:
                got = None
                for chunk in resp.iter_raw():
                    if got is None and b'"content"' in chunk:
                        got = (time.perf_counter() - t) * 1000
                first.append(got if got is not None else (time.perf_counter() - t) * 1000)
    q = statistics.quantiles
    return {"p50": statistics.median(whole), "p99": q(whole, n=100)[98],
            "ttft_p50": statistics.median(first), "ttft_p99": q(first, n=100)[98]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--feature", choices=("pii", "otel"), default="pii")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="lockgate-guard-bench-")
    procs = bench.Procs(os.path.join(workdir, "pids"))
    os.sched_setaffinity(0, {int(bench.LOAD_CORE)})
    try:
        upstream = bench.free_port()
        bench.start_nginx(procs, workdir, upstream)
        env = {}
        if args.feature == "otel":
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{bench.HOST}:{otlp_sink()}"}
        for r in range(args.rounds):
            plain = start(procs, workdir, f"plain{r}", upstream, None)
            guarded = start(procs, workdir, f"{args.feature}{r}", upstream, args.feature, env)
            a, b = measure(plain, args.requests), measure(guarded, args.requests)
            print(f"round {r + 1}: " + "  ".join(
                f"{k} {a[k]:.3f} -> {b[k]:.3f} ms (+{b[k] - a[k]:.3f})" for k in a))
            for p in procs.procs[1:]:
                procs.stop(p)
            del procs.procs[1:]
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
