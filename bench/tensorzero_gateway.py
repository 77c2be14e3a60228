#!/usr/bin/env python3
"""Runs TensorZero's gateway as a standalone HTTP server, for bench.py's `tensorzero` column.

The PyPI package `tensorzero` ships the whole Rust gateway inside its extension module
(`tensorzero.abi3.so`) but no `gateway` executable. `tensorzero._start_http_gateway` (what the
package's `patch_openai_client` uses) starts it as an HTTP server on the tokio runtime of the
extension, in this process: TensorZero's own code (`start_openai_compatible_gateway`) binds
127.0.0.1 on a port of the kernel's choosing (port 0: `[gateway] bind_address` is not read on this
path) and mounts only the OpenAI-compatible routes (`POST /openai/v1/chat/completions`, ...; no
`/health`). So this script starts it, writes the port it got to --port-file (atomically), and then
only waits for SIGTERM / SIGINT; the Python main thread sleeps in sigwait, every request is served by
the gateway's tokio threads. Run it with the venv of the package:

    taskset -c 0 bench/.tensorzero-venv/bin/python bench/tensorzero_gateway.py \
        --config tensorzero.toml --port-file tensorzero.port
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="tensorzero.toml")
    ap.add_argument("--port-file", required=True, help="where to write the port the gateway listens on")
    args = ap.parse_args()
    # block the signals before the gateway's threads exist, so that they all inherit the mask and
    # only sigwait below receives them
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})

    import tensorzero

    gateway = tensorzero._start_http_gateway(config_file=args.config, clickhouse_url=None, postgres_url=None,
                                             valkey_url=None, async_setup=False)
    port = int(gateway.base_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, args.port_file)
    print(f"tensorzero {tensorzero.__version__}: gateway at {gateway.base_url}", flush=True)
    sig = signal.sigwait({signal.SIGTERM, signal.SIGINT})
    print(f"signal {sig}: closing the gateway", flush=True)
    gateway.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
