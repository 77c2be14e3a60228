#!/usr/bin/env bash
# Lockgate benchmark: direct nginx vs Lockgate vs LiteLLM Proxy (and TensorZero), same upstream, same run.
#
#   bench/run.sh                   # direct, forwarder, lockgate, litellm
#   bench/run.sh --only lockgate   # direct + forwarder + lockgate (skips LiteLLM and its install)
#   bench/run.sh --only litellm    # direct + litellm only
#   (forwarder: the featureless raw-ASGI floor with Lockgate's upstream client, bench/forwarder.py; measured with lockgate)
#   bench/run.sh --only lockgate --cache   # + the response-cache columns (same as BENCH_CACHE=1)
#   bench/run.sh --only lockgate --with-tensorzero   # + TensorZero's gateway (bench/tensorzero_gateway.py)
#   bench/run.sh --only tensorzero  # direct + tensorzero only
#
# Environment:
#   BENCH_DURATION        wrk duration per measurement (default 10s)
#   BENCH_WARMUP          wrk warm-up per target and request kind (default 3s)
#   BENCH_CONNECTIONS     connections for the throughput runs (default 32)
#   BENCH_STREAM_REQUESTS sequential streamed requests measured (default 300, after BENCH_STREAM_WARMUP=50)
#   BENCH_DEPLOYMENTS     deployments in the plain model group (default 1)
#   BENCH_VIRTUAL_KEY     1: Lockgate requests use a virtual key with rpm, tpm, parallel and budget limits
#   BENCH_CACHE           1: with lockgate, also lockgate-cache-hit, lockgate-varied, lockgate-cache-miss
#   LOCKGATE_BIN          lockgate executable (default <repo>/.venv/bin/lockgate)
#   TENSORZERO_PYTHON     python of a venv with the tensorzero package (default bench/.tensorzero-venv/bin/python)
#   BENCH_OUTPUT          JSON output (default bench/results/latest.json)
# See bench/README.md.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
COMMAND="bench/run.sh${*:+ $*}"
TARGETS="direct,forwarder,lockgate,litellm"
WITH_TENSORZERO=""

while [ $# -gt 0 ]; do
  case "$1" in
    --only)
      [ $# -ge 2 ] || { echo "--only needs a value (lockgate, litellm, or a comma list)" >&2; exit 2; }
      TARGETS="direct,$2"; shift 2 ;;
    --only=*) TARGETS="direct,${1#--only=}"; shift ;;
    --cache) export BENCH_CACHE=1; shift ;;
    --with-tensorzero) WITH_TENSORZERO=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -z "$WITH_TENSORZERO" ] || TARGETS="$TARGETS,tensorzero"
for t in ${TARGETS//,/ }; do
  case "$t" in direct|forwarder|lockgate|litellm|tensorzero) ;; *) echo "unknown target: $t" >&2; exit 2 ;; esac
done
want() { [[ ",$TARGETS," == *",$1,"* ]]; }
if want lockgate && ! want forwarder; then TARGETS="${TARGETS/direct,/direct,forwarder,}"; fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# --- tools -------------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing ${missing[*]} from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

PYTHON="python3"
[ -x "$REPO_DIR/.venv/bin/python" ] && PYTHON="$REPO_DIR/.venv/bin/python"

if want lockgate; then
  LOCKGATE_BIN="${LOCKGATE_BIN:-$REPO_DIR/.venv/bin/lockgate}"
  if ! [ -x "$LOCKGATE_BIN" ]; then
    echo "lockgate not found at $LOCKGATE_BIN (install the project into .venv, or set LOCKGATE_BIN)" >&2
    exit 1
  fi
  export LOCKGATE_BIN
fi

if want litellm; then
  LVENV="$BENCH_DIR/.litellm-venv"
  if ! [ -x "$LVENV/bin/litellm" ]; then
    echo "[setup] installing LiteLLM Proxy into $LVENV (takes a few minutes)" >&2
    python3 -m venv "$LVENV"
    "$LVENV/bin/pip" install -q 'litellm[proxy]' 'certifi<2026.10.19'
  fi
  export LITELLM_BIN="$LVENV/bin/litellm"
fi

if want tensorzero; then
  TVENV="$BENCH_DIR/.tensorzero-venv"
  if [ -z "${TENSORZERO_PYTHON:-}" ]; then
    if ! "$TVENV/bin/python" -c 'import tensorzero' >/dev/null 2>&1; then
      echo "[setup] installing tensorzero (its gateway is inside the wheel) into $TVENV" >&2
      python3 -m venv "$TVENV"
      "$TVENV/bin/pip" install -q tensorzero
    fi
    TENSORZERO_PYTHON="$TVENV/bin/python"
  fi
  export TENSORZERO_PYTHON
fi

# --- run ---------------------------------------------------------------------
WORKDIR="$(mktemp -d -t lockgate-bench.XXXXXX)"
BENCH_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
  fi
  # every process group bench.py started (nginx, gateways) is listed in $WORKDIR/pids
  if [ -f "$WORKDIR/pids" ]; then
    while read -r pgid; do
      [ -n "$pgid" ] && kill -TERM -- "-$pgid" 2>/dev/null || true
    done < "$WORKDIR/pids"
    sleep 0.5
    while read -r pgid; do
      [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null || true
    done < "$WORKDIR/pids"
  fi
  # keep the last run's logs (gateway output, every wrk output, generated configs)
  if [ -d "$WORKDIR" ]; then
    mkdir -p "$BENCH_DIR/results"
    rm -rf "$BENCH_DIR/results/last-run-logs"
    cp -r "$WORKDIR" "$BENCH_DIR/results/last-run-logs" 2>/dev/null || true
    rm -rf "$BENCH_DIR/results/last-run-logs/nginx/tmp"
    echo "logs of this run: bench/results/last-run-logs/" >&2
  fi
  rm -rf "$WORKDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export BENCH_COMMAND="$COMMAND"
"$PYTHON" "$BENCH_DIR/bench.py" --workdir "$WORKDIR" --targets "$TARGETS" &
BENCH_PID=$!
wait "$BENCH_PID"
