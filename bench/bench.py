#!/usr/bin/env python3
"""Lockgate benchmark orchestrator. Run it through bench/run.sh.

Starts a fixed-response nginx upstream, then for each target (direct,
forwarder, lockgate, tensorzero, litellm) starts the gateway, times its startup, warms it up and
measures latency at 1 connection, throughput at N connections, streaming
TTFT / whole-stream time, streamed throughput and RSS. Prints a table and
writes JSON to bench/results/latest.json.

Core layout (2-core machine): the gateway under test runs alone on core 0
(taskset -c 0); nginx, wrk and this script run on core 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import stream_client as sc  # noqa: E402

HOST = "127.0.0.1"
MASTER_KEY = "sk-bench-master"
GW_CORE = "0"
LOAD_CORE = "1"
ALL_TARGETS = ["direct", "forwarder", "lockgate", "lockgate-cache-hit", "lockgate-varied", "lockgate-cache-miss",
               "tensorzero", "litellm"]
# BENCH_CACHE=1 (run.sh --cache): the response-cache columns, measured with lockgate
CACHE_TARGETS = ["lockgate-cache-hit", "lockgate-varied", "lockgate-cache-miss"]
CACHED = {"lockgate-cache-hit", "lockgate-cache-miss"}  # run with litellm_settings.cache (type local)
VARIED = {"lockgate-varied", "lockgate-cache-miss"}  # every request's body is unique (a counter in the user message)
VARY_MARK = "@@VARY@@"
# TensorZero (run.sh --with-tensorzero): its OpenAI-compatible route and model names (tensorzero_gateway.py)
TZ_PATH = "/openai/v1/chat/completions"
TZ_MODEL_PREFIX = "tensorzero::model_name::"

GOALS = {  # Lockgate performance targets (added = lockgate minus direct)
    "added_p50_ms": 0.35,
    "added_p99_ms": 1.0,
    "rps_32": 4500,
    "stream_added_ttft_ms": 0.5,
    "stream_added_total_ms": 1.0,
    "rss_mb": 80,
    "startup_s": 1.0,
}

# --------------------------------------------------------------------------
# fixed payloads

RESPONSE_JSON = json.dumps({
    "id": "chatcmpl-bench0000000000000000000001",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "bench-model",
    "system_fingerprint": "fp_bench01",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant",
                    "content": "This is a fixed response from the benchmark upstream, about one short sentence of text long."},
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {"prompt_tokens": 231, "completion_tokens": 21, "total_tokens": 252},
}, separators=(",", ":"))

STREAM_CHUNKS = 20


def _stream_body() -> str:
    base = {"id": "chatcmpl-benchstream000000000000001", "object": "chat.completion.chunk",
            "created": 1700000000, "model": "bench-stream", "system_fingerprint": "fp_bench01"}
    events = []
    for i in range(STREAM_CHUNKS):
        delta = {"content": f"tok{i:02d} "}
        if i == 0:
            delta = {"role": "assistant", "content": f"tok{i:02d} "}
        ev = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": "stop" if i == STREAM_CHUNKS - 1 else None}])
        events.append("data: " + json.dumps(ev, separators=(",", ":")) + "\n\n")
    usage = dict(base, choices=[], usage={"prompt_tokens": 231, "completion_tokens": 20, "total_tokens": 251})
    events.append("data: " + json.dumps(usage, separators=(",", ":")) + "\n\n")
    events.append("data: [DONE]\n\n")
    return "".join(events)


STREAM_BODY = _stream_body()

_SYSTEM = ("You are a careful assistant used in a gateway benchmark. Answer briefly and precisely, "
           "prefer plain sentences, never invent facts, say so when you do not know, and keep any "
           "code examples short. This system prompt is padded to look like a realistic one: it lists "
           "a few rules about tone, formatting and safety so that the request body is about one "
           "kilobyte in size, which is typical for a short chat turn sent through a gateway.")
_USER = ("Summarise in two sentences why a reverse proxy in front of several language model "
         "providers is useful for an engineering team, mentioning key management, usage "
         "accounting and failover between providers. Keep it under sixty words, please, and do "
         "not use bullet points or headings in the answer.")


def request_body(model: str, stream: bool, vary: bool = False) -> bytes:
    """vary: the user message starts with VARY_MARK, replaced per request by a unique token (Varying)."""
    user = VARY_MARK + _USER if vary else _USER
    body = {"model": model,
            "messages": [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}],
            "temperature": 0.2, "max_tokens": 128}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def _nginx_str(s: str) -> str:
    assert "'" not in s and "\\" not in s and "$" not in s
    return "'" + s.replace("\n", "\\n") + "'"


def _nginx_set_parts(s: str, limit: int = 2000) -> str:
    """nginx caps one config token at ~4 KB: build the body from several variables."""
    parts, cur = [], ""
    for ev in s.split("\n\n")[:-1]:
        ev += "\n\n"
        if cur and len(cur) + len(ev) > limit:
            parts.append(cur)
            cur = ""
        cur += ev
    parts.append(cur)
    assert "".join(parts) == s
    lines = [f"            set $sse{i} {_nginx_str(p)};" for i, p in enumerate(parts)]
    lines.append('            return 200 "' + "".join(f"${{sse{i}}}" for i in range(len(parts))) + '";')
    return "\n".join(lines)


# --------------------------------------------------------------------------
# process management


class Procs:
    """Tracks spawned process groups; also records their ids in a file so
    that run.sh's EXIT trap can kill them if this script dies."""

    def __init__(self, pidfile: str):
        self.pidfile = pidfile
        self.procs: list[subprocess.Popen] = []

    def spawn(self, argv, log_path, env=None, cwd=None) -> subprocess.Popen:
        log = open(log_path, "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, cwd=cwd, start_new_session=True)
        log.close()
        self.procs.append(p)
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 10.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # the group may outlive its leader (worker processes)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(2)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p, timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_rss_mb(root: int) -> tuple[float, int]:
    total_kb, n = 0, 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        n += 1
                        break
        except OSError:
            pass
    return total_kb / 1024.0, n


def wait_http_200(port: int, path: str, timeout: float, proc: subprocess.Popen | None = None,
                  interval: float = 0.005, ok: tuple = (200,)) -> float | None:
    """Poll until GET path answers 200 (or a status in ok); returns perf_counter() at success."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if sc.get_status(HOST, port, path, timeout=1.0) in ok:
            return time.perf_counter()
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(interval)
    return None


def wait_port_file(path: str, timeout: float, proc: subprocess.Popen, interval: float = 0.005) -> int | None:
    """Poll until path holds a port number (written atomically by the gateway's launcher)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            pass
        if proc.poll() is not None:
            return None
        time.sleep(interval)
    return None


# --------------------------------------------------------------------------
# wrk

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _to_ms(s: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", s.strip())
    if not m:
        raise ValueError(f"bad wrk time {s!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {"non2xx": 0, "socket_errors": 0, "requests": None, "rps": None}
    dist = {}
    in_dist = False
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("Latency Distribution"):
            in_dist = True
            continue
        if in_dist:
            m = re.fullmatch(r"(\d+)%\s+(\S+)", s)
            if m:
                dist[int(m.group(1))] = _to_ms(m.group(2))
                continue
            in_dist = False
        m = re.match(r"Requests/sec:\s+([\d.]+)", s)
        if m:
            res["rps"] = float(m.group(1))
        m = re.match(r"(\d+) requests in", s)
        if m:
            res["requests"] = int(m.group(1))
        m = re.match(r"Non-2xx or 3xx responses:\s+(\d+)", s)
        if m:
            res["non2xx"] = int(m.group(1))
        m = re.match(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", s)
        if m:
            res["socket_errors"] = sum(int(x) for x in m.groups())
    res["p50_ms"] = dist.get(50)
    res["p75_ms"] = dist.get(75)
    res["p90_ms"] = dist.get(90)
    res["p99_ms"] = dist.get(99)
    res["errors"] = res["non2xx"] + res["socket_errors"]
    return res


def write_lua(path: str, body: bytes, key: str | None, tag: str | None = None) -> None:
    """tag: body is a request_body(vary=True) template; every request gets "<tag>-<counter> " at the mark
    (fixed width, so every body has the same length; a new tag per wrk run keeps runs apart)."""
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    if key:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {key}"')
    text = body.decode()
    assert "]==]" not in text
    if tag is None:
        lines.append(f"wrk.body = [==[{text}]==]")
    else:
        pre, post = text.split(VARY_MARK)
        lines += [f"local pre = [==[{pre}{tag}-]==]", f"local post = [==[{post}]==]", "local n = 0",
                  "request = function()", "  n = n + 1",
                  '  return wrk.format(nil, nil, nil, pre .. string.format("%09d ", n) .. post)', "end"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Varying:
    """Unique bodies from a request_body(vary=True) template, for the Python clients."""

    def __init__(self, template: bytes, tag: str):
        self.pre, self.post = template.split(VARY_MARK.encode())
        self.pre += tag.encode() + b"-"

    def __call__(self, i: int) -> bytes:
        return self.pre + b"%09d " % i + self.post


def run_wrk(url: str, script: str, conns: int, duration: str, log_path: str) -> dict:
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency",
            "--timeout", "10s", "-s", script, url]
    cp = subprocess.run(argv, capture_output=True, text=True)
    with open(log_path, "a") as f:
        f.write("$ " + " ".join(argv) + "\n" + cp.stdout + cp.stderr + "\n")
    if cp.returncode != 0:
        raise RuntimeError(f"wrk failed ({cp.returncode}): {cp.stderr.strip()}")
    return parse_wrk(cp.stdout)


# --------------------------------------------------------------------------
# upstream


def start_nginx(procs: Procs, workdir: str, port: int) -> subprocess.Popen:
    ndir = os.path.join(workdir, "nginx")
    for d in ("", "tmp", "logs"):
        os.makedirs(os.path.join(ndir, d), exist_ok=True)
    user_line = "user root root;" if os.geteuid() == 0 else ""
    conf = f"""
{user_line}
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity {'1' + '0' * int(LOAD_CORE)};
pid {ndir}/nginx.pid;
error_log {ndir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {ndir}/tmp/client_body;
    proxy_temp_path {ndir}/tmp/proxy;
    fastcgi_temp_path {ndir}/tmp/fastcgi;
    uwsgi_temp_path {ndir}/tmp/uwsgi;
    scgi_temp_path {ndir}/tmp/scgi;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_buffer_size 64k;
    tcp_nodelay on;
    server_tokens off;
    server {{
        listen {HOST}:{port} reuseport backlog=4096;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 {_nginx_str(RESPONSE_JSON)};
        }}
        location = /stream/v1/chat/completions {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
{_nginx_set_parts(STREAM_BODY)}
        }}
        location / {{ return 404; }}
    }}
}}
"""
    path = os.path.join(ndir, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    argv = ["taskset", "-c", LOAD_CORE, shutil.which("nginx") or "/usr/sbin/nginx",
            "-p", ndir + "/", "-c", path, "-e", f"{ndir}/logs/error.log"]
    p = procs.spawn(argv, os.path.join(workdir, "nginx.log"))
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                break
        except OSError:
            if p.poll() is not None:
                raise RuntimeError("nginx exited:\n" + open(os.path.join(workdir, "nginx.log")).read())
            time.sleep(0.02)
    else:
        raise RuntimeError("nginx did not start")
    return p


def write_gateway_config(path: str, upstream_port: int, deployments: int = 1, cache: bool = False) -> None:
    # BENCH_DEPLOYMENTS > 1: the plain model group has that many deployments (routing is exercised)
    plain = "".join(f"""  - model_name: bench-model
    litellm_params: {{model: openai/bench-model, api_base: http://{HOST}:{upstream_port}/v1, api_key: sk-upstream}}
    model_info: {{id: bench-deployment-{i}}}
""" for i in range(deployments))
    text = f"""model_list:
{plain}  - model_name: bench-stream
    litellm_params: {{model: openai/bench-stream, api_base: http://{HOST}:{upstream_port}/stream/v1, api_key: sk-upstream}}
general_settings: {{master_key: {MASTER_KEY}}}
"""
    if cache:  # the response cache, in process (docs/caching.md)
        text += "litellm_settings: {cache: true, cache_params: {type: local}}\n"
    with open(path, "w") as f:
        f.write(text)


def write_tensorzero_config(path: str, upstream_port: int) -> None:
    """TensorZero's equivalent of the gateway config: the two models, each with one provider of type
    openai at the nginx upstream; observability off (no ClickHouse), no Postgres, no Valkey, no auth."""
    text = "[gateway]\nobservability.enabled = false\n"
    for model, base in (("bench-model", "/v1/"), ("bench-stream", "/stream/v1/")):
        text += f"""
[models.{model}]
routing = ["nginx"]

[models.{model}.providers.nginx]
type = "openai"
model_name = "{model}"
api_base = "http://{HOST}:{upstream_port}{base}"
api_key_location = "none"
"""
    with open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------
# targets


def gateway_argv(target: str, args, config: str, port: int, upstream_port: int) -> tuple[list[str], dict]:
    env = dict(os.environ)
    if target == "lockgate" or target in CACHE_TARGETS:
        return (["taskset", "-c", GW_CORE, args.lockgate_bin, "serve", "--config", config,
                 "--host", HOST, "--port", str(port), "--workers", "1"], env)
    if target == "forwarder":  # the floor: raw ASGI + Lockgate's upstream client, no features (forwarder.py)
        env["FORWARDER_UPSTREAM"] = f"http://{HOST}:{upstream_port}"
        python = os.path.join(os.path.dirname(args.lockgate_bin), "python")
        return (["taskset", "-c", GW_CORE, python, "-m", "uvicorn", "forwarder:app", "--app-dir", HERE,
                 "--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                 "--no-access-log", "--log-level", "warning"], env)
    if target == "tensorzero":  # the gateway of the tensorzero wheel, as an HTTP server (tensorzero_gateway.py)
        tz_config = os.path.join(os.path.dirname(config), "tensorzero.toml")
        return (["taskset", "-c", GW_CORE, args.tensorzero_python, os.path.join(HERE, "tensorzero_gateway.py"),
                 "--config", tz_config, "--port-file", os.path.join(os.path.dirname(config), "tensorzero.port")],
                env)
    if target == "litellm":
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        return (["taskset", "-c", GW_CORE, args.litellm_bin, "--config", config, "--host", HOST,
                 "--port", str(port), "--num_workers", "1"], env)
    raise ValueError(target)


def tool_version(argv) -> str | None:
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        out = [ln.strip() for ln in (cp.stdout + cp.stderr).splitlines() if ln.strip()]
        return out[0] if out else None
    except Exception as e:  # noqa: BLE001
        return f"unavailable ({type(e).__name__})"


def virtual_key(port: int, alias: str = "bench") -> str:
    """BENCH_VIRTUAL_KEY=1: a Lockgate virtual key whose limits are all checked but never reached."""
    body = json.dumps({"key_alias": alias, "rpm_limit": 10**9, "tpm_limit": 10**12,
                       "max_parallel_requests": 100_000, "max_budget": 1e9, "budget_duration": "30d"}).encode()
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("POST", "/key/generate", body, {"Content-Type": "application/json",
                                                "Authorization": f"Bearer {MASTER_KEY}"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"/key/generate failed: {resp.status} {data}")
    return data["key"]


_CACHE_METRIC = re.compile(r'^lockgate_cache_(requests|stores)_total\{(?:result|outcome)="([\w-]+)"\} ([\d.e+]+)$', re.M)


def cache_metrics(port: int) -> dict:
    """The response cache's counters from /metrics: {"requests": {result: n}, "stores": {outcome: n}}."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    conn.close()
    out: dict = {"requests": {}, "stores": {}}
    for kind, label, value in _CACHE_METRIC.findall(text):
        out[kind][label] = int(float(value))
    try:  # the store's own figures (entries, bytes held, max_bytes)
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.request("GET", "/cache/ping", headers={"Authorization": f"Bearer {MASTER_KEY}"})
        out["store"] = json.loads(conn.getresponse().read()).get("stats")
        conn.close()
    except (OSError, ValueError) as e:
        out["store"] = f"unavailable ({type(e).__name__})"
    return out


def check_cache(target: str, res: dict) -> str | None:
    """A cache column measures what its name says: hit, every request after the first two (one plain, one
    streamed) a hit; miss, no hit at all. The reason it does not, or None."""
    probe, m = res.get("cache_probe", {}), _get(res, "cache_metrics", "requests") or {}
    if target == "lockgate-cache-hit":
        if probe.get("plain") != "hit" or probe.get("stream") != "hit":
            return f"the probe requests were not hits: {probe}"
        if m.get("miss", 0) > 2 or m.get("bypass", 0) or not m.get("hit"):
            return f"not every request was a hit: {m}"
    elif target == "lockgate-cache-miss":
        if probe.get("plain") != "miss" or probe.get("stream") != "miss":
            return f"the probe requests were not misses: {probe}"
        if m.get("hit", 0) or m.get("bypass", 0) or not m.get("miss"):
            return f"not every request was a miss: {m}"
    return None


def bench_target(target: str, args, procs: Procs, workdir: str, upstream_port: int, config: str) -> dict:
    log_path = os.path.join(workdir, f"{target}.log")
    wrk_log = os.path.join(workdir, f"wrk-{target}.log")
    res: dict = {"target": target}
    proc = None
    if target == "direct":
        port = upstream_port
        path_plain, path_stream = "/v1/chat/completions", "/stream/v1/chat/completions"
        auth = False
    else:
        port = free_port()
        path_plain = path_stream = "/v1/chat/completions"
        auth = True
        if target in CACHED:
            config = config.replace(".yaml", "-cache.yaml")
        argv, env = gateway_argv(target, args, config, port, upstream_port)
        print(f"[{target}] starting: {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        proc = procs.spawn(argv, log_path, env=env, cwd=workdir)
        if target == "tensorzero":
            # the gateway picks its own port (tensorzero_gateway.py writes it) and has no health route:
            # healthy = listening and answering HTTP (GET on its POST route: 405)
            path_plain = path_stream = TZ_PATH
            port = wait_port_file(os.path.join(workdir, "tensorzero.port"), args.startup_timeout, proc)
            t1 = None if port is None else wait_http_200(port, TZ_PATH, args.startup_timeout, proc, ok=(405,))
        else:
            t1 = wait_http_200(port, "/health/liveliness", args.startup_timeout, proc)
        if t1 is None:
            tail = open(log_path, errors="replace").read()[-3000:]
            why = (f"exited with code {proc.returncode}" if proc.poll() is not None
                   else f"did not become healthy within {args.startup_timeout}s")
            procs.stop(proc)
            raise RuntimeError(f"{target} {why}; log tail:\n{tail}")
        res["startup_s"] = t1 - t0
        print(f"[{target}] healthy after {res['startup_s']:.3f}s", flush=True)

    try:
        headers = {"Content-Type": "application/json"}
        key = MASTER_KEY if auth else None
        if target == "lockgate" and os.environ.get("BENCH_VIRTUAL_KEY") == "1":
            key = virtual_key(port)
            res["virtual_key"] = True
            print(f"[{target}] requests use a virtual key with rpm, tpm, parallel and budget limits", flush=True)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        vary = target in VARIED
        prefix = TZ_MODEL_PREFIX if target == "tensorzero" else ""
        plain = request_body(prefix + "bench-model", False, vary)
        stream = request_body(prefix + "bench-stream", True, vary)
        runs = iter(range(1, 1000))

        def lua(kind: str) -> str:
            """The wrk script of one run; a varying body gets a tag of its own in every run."""
            if not vary:
                path = os.path.join(workdir, f"{target}-{kind}.lua")
                if not os.path.exists(path):
                    write_lua(path, plain if kind == "plain" else stream, key)
                return path
            n = next(runs)
            path = os.path.join(workdir, f"{target}-{kind}-{n}.lua")
            write_lua(path, plain if kind == "plain" else stream, key, tag=f"w{n}")
            return path

        def one(body: bytes, tag: str) -> bytes:
            return Varying(body, tag)(0) if vary else body

        url_plain = f"http://{HOST}:{port}{path_plain}"
        url_stream = f"http://{HOST}:{port}{path_stream}"

        # sanity: one request of each kind must succeed and look right
        st, hdrs, body, _, _ = sc.one_request(HOST, port, path_plain, one(plain, "sanity"), headers)
        if st != 200 or b'"choices"' not in body:
            raise RuntimeError(f"{target}: sanity request failed: {st} {body[:300]!r}")
        first = {"plain": hdrs.get("x-lockgate-cache")}
        st, hdrs, body, _, _ = sc.one_request(HOST, port, path_stream, one(stream, "sanity"), headers)
        if st != 200 or b"[DONE]" not in body or body.count(b'"content"') < STREAM_CHUNKS:
            raise RuntimeError(f"{target}: sanity stream request failed: {st} {body[:300]!r}")
        first["stream"] = hdrs.get("x-lockgate-cache")
        res["response_bytes"] = len(body)
        if target in CACHED:
            # the probe: the same request again (hit column) or another unique one (miss column)
            tag = "probe"
            _, hdrs, _, _, _ = sc.one_request(HOST, port, path_plain, one(plain, tag), headers)
            probe = {"plain": hdrs.get("x-lockgate-cache")}
            _, hdrs, _, _, _ = sc.one_request(HOST, port, path_stream, one(stream, tag), headers)
            probe["stream"] = hdrs.get("x-lockgate-cache")
            res["cache_first"], res["cache_probe"] = first, probe
            print(f"[{target}] x-lockgate-cache: first {first}, probe {probe}", flush=True)

        print(f"[{target}] warm-up {args.warmup}", flush=True)
        run_wrk(url_plain, lua("plain"), args.connections, args.warmup, wrk_log)
        run_wrk(url_stream, lua("stream"), args.connections, args.warmup, wrk_log)

        print(f"[{target}] latency, 1 connection, {args.duration}", flush=True)
        res["c1"] = run_wrk(url_plain, lua("plain"), 1, args.duration, wrk_log)
        print(f"[{target}] throughput, {args.connections} connections, {args.duration}", flush=True)
        res["cN"] = run_wrk(url_plain, lua("plain"), args.connections, args.duration, wrk_log)
        print(f"[{target}] streaming, 1 connection, {args.stream_requests} sequential requests", flush=True)
        res["stream_c1"] = sc.measure_stream(HOST, port, path_stream, stream, headers,
                                             n=args.stream_requests, warmup=args.stream_warmup,
                                             expect_chunks=STREAM_CHUNKS,
                                             body_for=Varying(stream, "s") if vary else None)
        if args.quickack_stream:
            print(f"[{target}] streaming, 1 connection, client ACKs at once (TCP_QUICKACK)", flush=True)
            res["stream_c1_quickack"] = sc.measure_stream(HOST, port, path_stream, stream, headers,
                                                          n=args.stream_requests, warmup=args.stream_warmup,
                                                          expect_chunks=STREAM_CHUNKS,
                                                          body_for=Varying(stream, "q") if vary else None,
                                                          quickack=True)
        print(f"[{target}] streamed throughput, {args.connections} connections, {args.duration}", flush=True)
        res["stream_cN"] = run_wrk(url_stream, lua("stream"), args.connections, args.duration, wrk_log)

        if proc is not None:
            if proc.poll() is not None:
                raise RuntimeError(f"{target} exited during the run (code {proc.returncode})")
            rss, nproc = tree_rss_mb(proc.pid)
            res["rss_mb"] = rss
            res["processes"] = nproc
        if target in CACHED:  # after the RSS: /cache/ping loads the management API (~19 MB)
            res["cache_metrics"] = cache_metrics(port)
            bad = check_cache(target, res)
            res["cache_check"] = {"pass": bad is None, "reason": bad}
            print(f"[{target}] cache counters {res['cache_metrics']}"
                  + (f"  !!! {bad}" if bad else ""), flush=True)
    finally:
        if proc is not None:
            procs.stop(proc)
    return res


# --------------------------------------------------------------------------
# report


def _get(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k) if isinstance(d, dict) else None
    return d


def build_rows(results: dict) -> list[tuple[str, dict]]:
    """(label, {target: formatted}) rows."""
    direct = results.get("direct", {})

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    def added(t, *keys):
        a, b = _get(results.get(t), *keys), _get(direct, *keys)
        if t == "direct" or a is None or b is None:
            return None
        return a - b

    def errflag(t, key):
        e = _get(results.get(t), key, "errors")
        return "" if not e else f" !{e} ERR"

    targets = list(results)
    rows = []

    def row(label, fn):
        rows.append((label, {t: fn(t) for t in targets}))

    def status(t):
        r = results[t]
        if r.get("failed"):
            return "FAILED"
        if any(_get(r, k, "errors") for k in ("c1", "cN", "stream_c1", "stream_cN")):
            return "ERRORS!"
        if r.get("cache_check") and not r["cache_check"]["pass"]:
            return "CACHE?"
        return "ok"

    row("status", status)
    row("latency c=1 p50 (ms)", lambda t: fmt(_get(results[t], "c1", "p50_ms"), ".3f") + errflag(t, "c1"))
    row("latency c=1 p99 (ms)", lambda t: fmt(_get(results[t], "c1", "p99_ms"), ".3f"))
    row("  added p50 (ms)", lambda t: fmt(added(t, "c1", "p50_ms"), "+.3f"))
    row("  added p99 (ms)", lambda t: fmt(added(t, "c1", "p99_ms"), "+.3f"))
    row("req/s c=N", lambda t: fmt(_get(results[t], "cN", "rps"), ",.0f") + errflag(t, "cN"))
    row("latency c=N p99 (ms)", lambda t: fmt(_get(results[t], "cN", "p99_ms"), ".2f"))
    row("non-2xx + socket errors c=N", lambda t: fmt(_get(results[t], "cN", "errors"), "d"))
    row("stream TTFT p50 (ms)", lambda t: fmt(_get(results[t], "stream_c1", "ttft_p50_ms"), ".3f"))
    row("stream total p50 (ms)", lambda t: fmt(_get(results[t], "stream_c1", "total_p50_ms"), ".3f"))
    row("  added TTFT (ms)", lambda t: fmt(added(t, "stream_c1", "ttft_p50_ms"), "+.3f"))
    row("  added total (ms)", lambda t: fmt(added(t, "stream_c1", "total_p50_ms"), "+.3f"))
    row("stream errors c=1", lambda t: fmt(_get(results[t], "stream_c1", "errors"), "d"))
    if any(_get(results[t], "stream_c1_quickack") for t in targets):
        row("quickack client: TTFT p50 (ms)", lambda t: fmt(_get(results[t], "stream_c1_quickack", "ttft_p50_ms"), ".3f"))
        row("quickack client: total p50 (ms)",
            lambda t: fmt(_get(results[t], "stream_c1_quickack", "total_p50_ms"), ".3f"))
        row("  added TTFT, quickack (ms)", lambda t: fmt(added(t, "stream_c1_quickack", "ttft_p50_ms"), "+.3f"))
        row("  added total, quickack (ms)", lambda t: fmt(added(t, "stream_c1_quickack", "total_p50_ms"), "+.3f"))
    row("streamed req/s c=N", lambda t: fmt(_get(results[t], "stream_cN", "rps"), ",.0f") + errflag(t, "stream_cN"))
    row("RSS after load (MB)", lambda t: fmt(_get(results[t], "rss_mb"), ".1f"))
    row("startup (s)", lambda t: fmt(_get(results[t], "startup_s"), ".3f"))
    return rows


def render_table(results: dict, connections: int, markdown: bool = False) -> str:
    rows = build_rows(results)
    targets = list(results)
    rows = [(lbl.replace("c=N", f"c={connections}"), vals) for lbl, vals in rows]
    if markdown:
        out = ["| metric | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
        for lbl, vals in rows:
            out.append(f"| {lbl.strip()} | " + " | ".join(vals[t] for t in targets) + " |")
        return "\n".join(out)
    w0 = max(len(r[0]) for r in rows)
    ws = {t: max(len(t), *(len(v[t]) for _, v in rows)) for t in targets}
    out = [" " * w0 + "  " + "  ".join(t.rjust(ws[t]) for t in targets)]
    for lbl, vals in rows:
        out.append(lbl.ljust(w0) + "  " + "  ".join(vals[t].rjust(ws[t]) for t in targets))
    return "\n".join(out)


def check_goals(r: dict, direct: dict) -> dict:
    def added(*keys):
        a, b = _get(r, *keys), _get(direct, *keys)
        return None if a is None or b is None else a - b

    checks = {
        "added_p50_ms": (added("c1", "p50_ms"), GOALS["added_p50_ms"], "<="),
        "added_p99_ms": (added("c1", "p99_ms"), GOALS["added_p99_ms"], "<="),
        "rps_32": (_get(r, "cN", "rps"), GOALS["rps_32"], ">="),
        "stream_added_ttft_ms": (added("stream_c1", "ttft_p50_ms"), GOALS["stream_added_ttft_ms"], "<="),
        "stream_added_total_ms": (added("stream_c1", "total_p50_ms"), GOALS["stream_added_total_ms"], "<="),
        "rss_mb": (_get(r, "rss_mb"), GOALS["rss_mb"], "<="),
        "startup_s": (_get(r, "startup_s"), GOALS["startup_s"], "<="),
    }
    out = {}
    for k, (v, goal, op) in checks.items():
        ok = None if v is None else (v <= goal if op == "<=" else v >= goal)
        out[k] = {"value": v, "goal": f"{op} {goal}", "pass": ok}
    out["no_errors"] = {"value": sum(_get(r, k, "errors") or 0 for k in ("c1", "cN", "stream_c1", "stream_cN")),
                        "goal": "== 0", "pass": None}
    out["no_errors"]["pass"] = out["no_errors"]["value"] == 0
    return out


def peer_targets(r: dict, peer: dict, virtual_key: bool) -> dict:
    """Issue 16's targets, each a ratio against TensorZero in this run (``peer`` = compare(lockgate,
    tensorzero)): the requests/s target depends on the key; RSS counts only with the management API loaded
    (a virtual-key run: the key was made through /key/generate)."""
    stream_p50, stream_p99 = _get(r, "stream_c1", "total_p50_ms"), _get(r, "stream_c1", "total_p99_ms")
    checks = {
        "rps_ratio": (peer.get("rps_ratio"), 1.0 if virtual_key else 1.2, ">="),
        "added_p50_ratio": (peer.get("added_p50_ratio"), 1.0, "<="),
        "added_p99_ratio": (peer.get("added_p99_ratio"), 2.0, "<="),
        "streamed_rps_ratio": (peer.get("streamed_rps_ratio"), 1.2, ">="),
        "stream_p99_over_own_p50": (stream_p99 / stream_p50 if stream_p50 and stream_p99 else None, 3.0, "<="),
    }
    if virtual_key:
        checks["rss_mb"] = (_get(r, "rss_mb"), GOALS["rss_mb"], "<=")
    out = {}
    for k, (v, goal, op) in checks.items():
        ok = None if v is None else (v <= goal if op == "<=" else v >= goal)
        out[k] = {"value": v, "goal": f"{op} {goal}", "pass": ok}
    return out


def over_forwarder(r: dict, fwd: dict) -> dict:
    """What Lockgate's features cost over the featureless forwarder measured in the same run."""
    def diff(*keys):
        a, b = _get(r, *keys), _get(fwd, *keys)
        return None if a is None or b is None else a - b

    def ratio(*keys):
        a, b = _get(r, *keys), _get(fwd, *keys)
        return None if not a or not b else a / b

    return {"p50_c1_ms": diff("c1", "p50_ms"), "p99_c1_ms": diff("c1", "p99_ms"),
            "ttft_ms": diff("stream_c1", "ttft_p50_ms"), "stream_total_ms": diff("stream_c1", "total_p50_ms"),
            "rps_ratio": ratio("cN", "rps"), "streamed_rps_ratio": ratio("stream_cN", "rps")}


def compare(r: dict, base: dict, direct: dict) -> dict:
    """One column against another of the same run: ratios first (requests/s; the added latencies, each
    minus direct), then the differences in ms."""
    def val(d, *keys):
        return _get(d, *keys)

    def added(d, *keys):
        a, b = val(d, *keys), val(direct, *keys)
        return None if a is None or b is None else a - b

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    def diff(a, b):
        return None if a is None or b is None else a - b

    out = {"rps_ratio": ratio(val(r, "cN", "rps"), val(base, "cN", "rps")),
           "streamed_rps_ratio": ratio(val(r, "stream_cN", "rps"), val(base, "stream_cN", "rps"))}
    for name, keys in (("added_p50", ("c1", "p50_ms")), ("added_p99", ("c1", "p99_ms")),
                       ("added_ttft", ("stream_c1", "ttft_p50_ms")),
                       ("added_stream_total", ("stream_c1", "total_p50_ms")),
                       ("added_stream_total_p99", ("stream_c1", "total_p99_ms")),
                       ("added_ttft_quickack", ("stream_c1_quickack", "ttft_p50_ms")),
                       ("added_stream_total_quickack", ("stream_c1_quickack", "total_p50_ms"))):
        out[f"{name}_ratio"] = ratio(added(r, *keys), added(base, *keys))
    out["rss_ratio"] = ratio(val(r, "rss_mb"), val(base, "rss_mb"))
    for name, keys in (("p50_c1_ms", ("c1", "p50_ms")), ("p99_c1_ms", ("c1", "p99_ms")),
                       ("ttft_ms", ("stream_c1", "ttft_p50_ms")), ("stream_total_ms", ("stream_c1", "total_p50_ms")),
                       ("stream_total_p99_ms", ("stream_c1", "total_p99_ms")), ("rss_mb", ("rss_mb",))):
        out[name] = diff(val(r, *keys), val(base, *keys))
    return out


CACHE_COMPARISONS = [  # (name in the JSON, column, against)
    ("hit_over_forwarder", "lockgate-cache-hit", "forwarder"),
    ("hit_over_lockgate", "lockgate-cache-hit", "lockgate"),
    ("miss_over_varied", "lockgate-cache-miss", "lockgate-varied"),
    ("miss_over_lockgate", "lockgate-cache-miss", "lockgate"),
    ("varied_over_lockgate", "lockgate-varied", "lockgate"),
]

PEER_COMPARISONS = [  # (name in the JSON, column, against): Lockgate against the other gateways of the run
    ("lockgate_over_tensorzero", "lockgate", "tensorzero"),
    ("lockgate_over_forwarder", "lockgate", "forwarder"),
    ("lockgate_over_litellm", "lockgate", "litellm"),
    ("tensorzero_over_forwarder", "tensorzero", "forwarder"),
]
PEER_KEYS = [  # (key of compare(), printed label)
    ("rps_ratio", "req/s c=N"), ("added_p50_ratio", "added p50 c=1"), ("added_p99_ratio", "added p99 c=1"),
    ("streamed_rps_ratio", "streamed req/s"), ("added_ttft_ratio", "added TTFT"),
    ("added_stream_total_ratio", "added stream p50"), ("added_stream_total_p99_ratio", "added stream p99"),
    ("rss_ratio", "RSS"),
]
PEER_KEYS_QUICKACK = [("added_ttft_quickack_ratio", "TTFT quickack"),
                      ("added_stream_total_quickack_ratio", "stream quickack")]


def machine_info() -> dict:
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version()}


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--targets", default=",".join(ALL_TARGETS))
    ap.add_argument("--duration", default=os.environ.get("BENCH_DURATION", "10s"))
    ap.add_argument("--warmup", default=os.environ.get("BENCH_WARMUP", "3s"))
    ap.add_argument("--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", "32")))
    ap.add_argument("--stream-requests", type=int, default=int(os.environ.get("BENCH_STREAM_REQUESTS", "300")))
    ap.add_argument("--stream-warmup", type=int, default=int(os.environ.get("BENCH_STREAM_WARMUP", "50")))
    ap.add_argument("--startup-timeout", type=float, default=float(os.environ.get("BENCH_STARTUP_TIMEOUT", "180")))
    ap.add_argument("--lockgate-bin", default=os.environ.get("LOCKGATE_BIN", os.path.join(REPO, ".venv/bin/lockgate")))
    ap.add_argument("--litellm-bin", default=os.environ.get("LITELLM_BIN", os.path.join(HERE, ".litellm-venv/bin/litellm")))
    ap.add_argument("--tensorzero-python", default=os.environ.get("TENSORZERO_PYTHON",
                                                                  os.path.join(HERE, ".tensorzero-venv/bin/python")))
    ap.add_argument("--cache", action="store_true", default=os.environ.get("BENCH_CACHE") == "1",
                    help="with lockgate: also the response-cache columns (BENCH_CACHE=1)")
    ap.add_argument("--quickack-stream", action="store_true", default=None,
                    help="also time the sequential streams with a client that ACKs at once (TCP_QUICKACK); "
                         "default: on when tensorzero is a target (BENCH_QUICKACK=1/0 forces it)")
    ap.add_argument("--output", default=os.environ.get("BENCH_OUTPUT", os.path.join(HERE, "results", "latest.json")))
    args = ap.parse_args()

    wanted = args.targets.split(",")
    if args.cache:
        if "lockgate" in wanted:
            wanted += CACHE_TARGETS
        else:
            print("warning: --cache / BENCH_CACHE=1 needs the lockgate target; ignored", file=sys.stderr)
    targets = [t for t in ALL_TARGETS if t in wanted]
    if args.quickack_stream is None:
        env_qa = os.environ.get("BENCH_QUICKACK")
        args.quickack_stream = env_qa == "1" if env_qa in ("0", "1") else "tensorzero" in targets
    if "direct" not in targets:
        targets.insert(0, "direct")  # the baseline is always measured
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOAD_CORE)})
    else:
        print("warning: fewer than 2 CPUs; gateway and load generator share a core", file=sys.stderr)

    procs = Procs(os.path.join(args.workdir, "pids"))
    started = _dt.datetime.now(_dt.timezone.utc)
    results: dict = {}
    failures: dict = {}
    try:
        upstream_port = free_port()
        start_nginx(procs, args.workdir, upstream_port)
        print(f"[upstream] nginx on {HOST}:{upstream_port}", flush=True)
        config = os.path.join(args.workdir, "gateway-config.yaml")
        write_gateway_config(config, upstream_port, int(os.environ.get("BENCH_DEPLOYMENTS", "1")))
        if "tensorzero" in targets:
            write_tensorzero_config(os.path.join(args.workdir, "tensorzero.toml"), upstream_port)
        if any(t in CACHED for t in targets):
            write_gateway_config(config.replace(".yaml", "-cache.yaml"), upstream_port,
                                 int(os.environ.get("BENCH_DEPLOYMENTS", "1")), cache=True)
        for t in targets:
            try:
                results[t] = bench_target(t, args, procs, args.workdir, upstream_port, config)
            except Exception as e:  # noqa: BLE001 - report and go on with other targets
                print(f"[{t}] FAILED: {e}", file=sys.stderr, flush=True)
                failures[t] = str(e)[:4000]
                results[t] = {"target": t, "failed": True}
                if t == "direct":
                    raise
    finally:
        procs.stop_all()

    versions = {"nginx": tool_version(["nginx", "-v"]), "wrk": tool_version(["wrk", "-v"])}
    if any(t.startswith("lockgate") for t in targets):
        versions["lockgate"] = tool_version([args.lockgate_bin, "--version"])
    if "litellm" in targets:
        versions["litellm"] = tool_version([os.path.join(os.path.dirname(args.litellm_bin), "python"), "-c",
                                            "import importlib.metadata as m; print(m.version('litellm'))"])
    if "tensorzero" in targets:
        versions["tensorzero"] = tool_version([args.tensorzero_python, "-c",
                                               "import importlib.metadata as m; print(m.version('tensorzero'))"])
    report = {
        "started_utc": started.isoformat(timespec="seconds"),
        "command": os.environ.get("BENCH_COMMAND", " ".join(sys.argv)),
        "settings": {"duration": args.duration, "warmup": args.warmup, "connections": args.connections,
                     "stream_requests": args.stream_requests, "stream_warmup": args.stream_warmup,
                     "stream_chunks": STREAM_CHUNKS, "request_bytes": len(request_body("bench-model", False)),
                     "stream_request_bytes": len(request_body("bench-stream", True)),
                     "response_bytes": len(RESPONSE_JSON), "stream_response_bytes": len(STREAM_BODY),
                     "gateway_core": int(GW_CORE), "load_core": int(LOAD_CORE),
                     "quickack_stream": args.quickack_stream},
        "machine": machine_info(),
        "versions": versions,
        "results": results,
        "failures": failures,
    }
    if "lockgate" in results and "direct" in results:
        report["lockgate_goals"] = check_goals(results["lockgate"], results["direct"])
    if "lockgate" in results and "forwarder" in results:
        report["lockgate_over_forwarder"] = over_forwarder(results["lockgate"], results["forwarder"])
    if "tensorzero" in targets:
        report["settings"]["tensorzero"] = {
            "launcher": "bench/tensorzero_gateway.py (tensorzero._start_http_gateway: the wheel's Rust gateway, "
                        "OpenAI-compatible routes only, port chosen by the gateway)",
            "config": "tensorzero.toml: observability.enabled = false; per model one provider type openai, "
                      "api_key_location none (no ClickHouse, Postgres, Valkey or auth)",
            "path": TZ_PATH, "models": [TZ_MODEL_PREFIX + "bench-model", TZ_MODEL_PREFIX + "bench-stream"],
            "request_bytes": len(request_body(TZ_MODEL_PREFIX + "bench-model", False)),
            "stream_request_bytes": len(request_body(TZ_MODEL_PREFIX + "bench-stream", True)),
            "deployments": 1}
    # ratios of Lockgate against each other gateway of the run (added = minus direct); peer_comparisons[name]
    # holds every ratio and the differences in ms (and MB)
    peers = {name: compare(results[a], results[b], results.get("direct", {}))
             for name, a, b in PEER_COMPARISONS
             if a in results and b in results and not results[a].get("failed") and not results[b].get("failed")}
    if peers:
        report["peer_comparisons"] = peers
    if "lockgate_over_tensorzero" in peers:
        report["tensorzero_targets"] = peer_targets(results["lockgate"], peers["lockgate_over_tensorzero"],
                                                    bool(results["lockgate"].get("virtual_key")))

    if args.cache and "lockgate" in targets:
        report["settings"]["cache"] = {"config": "litellm_settings: {cache: true, cache_params: {type: local}}",
                                       "varied_request_bytes": len(Varying(request_body("bench-model", False, True),
                                                                           "w1")(1))}
        report["cache_comparisons"] = {
            name: compare(results[a], results[b], results.get("direct", {}))
            for name, a, b in CACHE_COMPARISONS
            if a in results and b in results and not results[a].get("failed") and not results[b].get("failed")}
        report["cache_checks"] = {t: results[t].get("cache_check") for t in CACHED if t in results}

    table = render_table(results, args.connections)
    print()
    print(table)
    flagged = [t for t in results for k in ("c1", "cN", "stream_c1", "stream_cN")
               if _get(results[t], k, "errors")]
    if flagged:
        print(f"\n!!! ERRORS during the run for: {', '.join(sorted(set(flagged)))} "
              f"(non-2xx / socket errors / bad streams) - figures are not trustworthy", flush=True)
    for t, msg in failures.items():
        print(f"\n!!! {t} FAILED: {msg.splitlines()[0] if msg else ''}")
    if "lockgate_goals" in report:
        print("\nLockgate against its goals:")
        for k, v in report["lockgate_goals"].items():
            val = v["value"]
            sval = "-" if val is None else (f"{val:.3f}" if isinstance(val, float) else str(val))
            mark = {True: "ok", False: "MISS", None: "n/a"}[v["pass"]]
            print(f"  {k:24s} {sval:>10s}  goal {v['goal']:<10s} {mark}")
    if report.get("lockgate_over_forwarder"):
        o = report["lockgate_over_forwarder"]
        print("\nLockgate over the bare forwarder (the floor on this machine):")
        for k, v in o.items():
            print(f"  {k:24s} {'-' if v is None else format(v, '+.3f' if k.endswith('_ms') else '.2f'):>10s}")
    if report.get("peer_comparisons"):
        print(f"\nRatios between gateways (req/s and streamed req/s at c={args.connections}; added = minus direct, "
              "at c=1; stream = whole stream; RSS after load):")
        w = max(len(n) for n in report["peer_comparisons"])
        keys = PEER_KEYS + (PEER_KEYS_QUICKACK if args.quickack_stream else [])
        print("  " + " " * w + "".join(f"{lbl.replace('c=N', f'c={args.connections}'):>18s}" for _, lbl in keys))
        for name, c in report["peer_comparisons"].items():
            print("  " + name.ljust(w) + "".join(f"{'-' if c[k] is None else format(c[k], '.2f'):>18s}"
                                                 for k, _ in keys))
    if report.get("tensorzero_targets"):
        key = "a virtual key" if results["lockgate"].get("virtual_key") else "the master key"
        print(f"\nIssue 16's targets against TensorZero ({key}):")
        for k, v in report["tensorzero_targets"].items():
            mark = {True: "ok", False: "MISS", None: "n/a"}[v["pass"]]
            print(f"  {k:24s} {'-' if v['value'] is None else format(v['value'], '.2f'):>10s}  goal {v['goal']:<8s} {mark}")
    if report.get("cache_comparisons"):
        print("\nResponse cache, ratios (requests/s at c=%d; added = minus direct, at c=1 or streamed c=1):"
              % args.connections)
        keys = ["rps_ratio", "added_p50_ratio", "added_p99_ratio", "streamed_rps_ratio", "added_ttft_ratio",
                "added_stream_total_ratio"]
        w = max(len(n) for n in report["cache_comparisons"])
        print("  " + " " * w + "".join(f"{k.replace('_ratio', ''):>20s}" for k in keys))
        for name, c in report["cache_comparisons"].items():
            print("  " + name.ljust(w) + "".join(f"{'-' if c[k] is None else format(c[k], '.2f'):>20s}" for k in keys))
    bad_cache = {t: c["reason"] for t, c in (report.get("cache_checks") or {}).items() if c and not c["pass"]}
    for t, why in bad_cache.items():
        print(f"\n!!! {t}: {why} - the column does not measure what its name says", flush=True)
    report["table_markdown"] = render_table(results, args.connections, markdown=True)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"\nwrote {args.output}")
    return 1 if failures or flagged or bad_cache else 0


if __name__ == "__main__":
    sys.exit(main())
