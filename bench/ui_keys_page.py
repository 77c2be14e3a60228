"""How long the admin UI's key pages take at scale: a real gateway (``lockgate serve``) on a seeded database,
each page fetched over loopback after signing in (the whole answer: session check, query, rendering).

    python bench/ui_seed.py sqlite:////tmp/ui-keys.db --keys 100000 --rows 0
    python bench/ui_keys_page.py sqlite:////tmp/ui-keys.db
    python bench/ui_seed.py postgresql://postgres@127.0.0.1:5432/ui_keys --keys 100000 --rows 0
    python bench/ui_keys_page.py postgresql://postgres@127.0.0.1:5432/ui_keys

Prints, per page, the median, p95 and slowest of ``--runs`` fetches (after 3 warm-up fetches), for the
master key (every key visible) and for an internal user (``user-7``: the 100 keys the seed gives them).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

MASTER = "sk-bench-master-key"
PAGES = {
    "keys, page 1 (25)": "/ui/keys",
    "keys, page 1 (100)": "/ui/keys?page_size=100",
    "keys, page 2000 (50)": "/ui/keys?page=2000&page_size=50",
    "keys, last page (25)": "/ui/keys?page=4000",
    "search alias prefix": "/ui/keys?q=key-9999",
    "search token prefix": "/ui/keys?q=5e3a",
    "filter by user": "/ui/keys?user_id=user-42",
    "filter by team": "/ui/keys?team_id=team-7",
    "filter blocked": "/ui/keys?status=blocked",
    "search + htmx partial": "/ui/keys?q=key-12",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(url: str, directory: Path) -> tuple[subprocess.Popen, str]:
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m", "mock_response": "x"}}],
              "general_settings": {"master_key": MASTER, "database_url": url, "shutdown_grace_seconds": 0}}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "lockgate.cli", "serve", "--config", str(path), "--port",
                                str(port), "--log-level", "warning"], env={**os.environ},
                               stdout=(directory / "gateway.log").open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health/liveliness", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the gateway did not start:\n" + (directory / "gateway.log").read_text())


def sign_in(client: httpx.Client, method: str, **fields: str) -> None:
    form = client.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post("/ui/login", data={"csrf_token": token.group(1), "method": method, **fields})
    assert answer.status_code == 303, answer.text[:300]


def measure(client: httpx.Client, path: str, runs: int, htmx: bool) -> tuple[list[float], int]:
    headers = {"HX-Request": "true", "HX-Target": "key-results"} if htmx else {}
    for _ in range(3):
        client.get(path, headers=headers)
    times = []
    rows = 0
    for _ in range(runs):
        began = time.perf_counter()
        answer = client.get(path, headers=headers)
        times.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
        rows = answer.text.count('<a href="/ui/keys/')
    return sorted(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the seeded database (sqlite:////path or postgresql://...)")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, base = start(args.url, Path(tmp))
        try:
            admin = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {MASTER}"})
            total = admin.get("/key/list", params={"page_size": 1}).json()["total_count"]
            if admin.get("/user/info", params={"user_id": "user-7"}).status_code == 404:
                made = admin.post("/user/new", json={"user_id": "user-7", "user_role": "internal_user",
                                                     "password": "bench-password"})
                assert made.status_code == 200, made.text
            master = httpx.Client(base_url=base, timeout=60)
            sign_in(master, "master_key", master_key=MASTER)
            user = httpx.Client(base_url=base, timeout=60)
            sign_in(user, "password", username="user-7", password="bench-password")
            backend = "PostgreSQL" if args.url.startswith("postgres") else "SQLite"
            print(f"{backend}, {total} keys, {args.runs} runs per page (ms: median / p95 / max; rows shown)")
            for who, client in (("master key", master), ("internal user user-7", user)):
                for name, path in PAGES.items():
                    times, rows = measure(client, path, args.runs, htmx="htmx" in name)
                    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                    print(f"  {who:22} {name:24} {statistics.median(times):7.1f} {p95:7.1f} {times[-1]:7.1f}"
                          f"   {rows} rows")
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
