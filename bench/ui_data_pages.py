"""How long the admin UI's data pages take at scale: a real gateway (``lockgate serve``) on a database seeded by
``bench/ui_seed.py`` (100k keys, 1M spend rows over 30 days), each page fetched over loopback after signing in
(the whole answer: session check, queries, rendering).

    python bench/ui_seed.py sqlite:////tmp/ui-scale.db && python bench/ui_data_pages.py sqlite:////tmp/ui-scale.db
    python bench/ui_data_pages.py postgresql://postgres@127.0.0.1:5432/ui_scale

Prints the median and slowest of ``--runs`` fetches per page (after one warm-up), for the master key (every row)
and for an internal user (``user-5``: 1/1000 of the rows).  Uses ``bench/ui_keys_page.py``'s start-up and
sign-in.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from ui_keys_page import MASTER, sign_in, start


def pages() -> dict[str, str]:
    week = (datetime.now(UTC).date() - timedelta(days=6)).isoformat()
    return {
        "overview": "/ui/overview",
        "usage, 30 days": "/ui/usage",
        "usage, 30 days by model": "/ui/usage?group_by=model",
        "usage, 7 days by key": f"/ui/usage?group_by=key&start={week}",
        "usage, 30 days by key": "/ui/usage?group_by=key",
        "usage, 30 days by team": "/ui/usage?group_by=team",
        "usage, 30 days by user": "/ui/usage?group_by=user",
        "usage, 30 days by tag": "/ui/usage?group_by=tag",
        "usage CSV, 30 days by model": "/ui/usage/export.csv?group_by=model",
        "logs, first page": "/ui/logs",
        "logs, request detail": "/ui/logs/request/seed-00999999",
        "audit log": "/ui/audit",
        "guardrails & cache": "/ui/guardrails-cache",
        "playground": "/ui/playground",
    }


def fetch(client: httpx.Client, path: str, runs: int) -> list[float]:
    client.get(path)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - began) * 1000)
        assert answer.status_code in (200, 404), (path, answer.status_code, answer.text[:200])
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, base = start(args.url, Path(tmp))
        try:
            admin = httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {MASTER}"})
            if admin.get("/user/info", params={"user_id": "user-5"}).status_code == 404:
                made = admin.post("/user/new", json={"user_id": "user-5", "user_role": "internal_user",
                                                     "password": "bench-password"})
                assert made.status_code == 200, made.text
            master = httpx.Client(base_url=base, timeout=120)
            sign_in(master, "master_key", master_key=MASTER)
            user = httpx.Client(base_url=base, timeout=120)
            sign_in(user, "password", username="user-5", password="bench-password")
            backend = "PostgreSQL" if args.url.startswith("postgres") else "SQLite"
            print(f"{backend}: {args.runs} fetches per page (ms: median / max)")
            for who, client in (("master key", master), ("internal user", user)):
                listed = pages()
                first = client.get("/ui/logs").text
                older = re.search(r'href="([^"]+)" rel="next"', first)
                if older:
                    listed["logs, next page (cursor)"] = older.group(1).replace("&amp;", "&")
                for name, path in listed.items():
                    if who == "internal user" and name in ("audit log", "guardrails & cache"):
                        continue
                    times = fetch(client, path, args.runs)
                    print(f"  {who:14} {name:30} {statistics.median(times):8.1f} {times[-1]:8.1f}", flush=True)
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
