"""The embedded SQLite's spend batches, written by a process of their own.

Run as ``python -m lockgate.sqlite_writer DATABASE`` by ``state/sqlite_spend.py``: it imports the
standard library's ``sqlite3`` and ``orjson`` only (not the ``lockgate.state`` package, which loads
SQLAlchemy), lowers its own priority, and then answers one line with one line:

* in: a JSON array of ``[sql, [params, ...]]`` statements, run in order with ``executemany`` in one
  ``BEGIN IMMEDIATE`` transaction;
* out: ``["ok"]`` once committed; ``["integrity"]`` when a constraint failed (a request id already
  stored); ``["error", "<type>: <message>"]`` for anything else.  Both are rolled back.

It ends when its standard input closes (the gateway closed it, or died).  The gateway's event loop
never runs a row's B-tree work; the kernel runs this process when the gateway's threads do not need
the core, and preempts it as soon as they do (docs/performance.md).
"""

from __future__ import annotations

import os
import sqlite3
import sys

import orjson

NICE = 19  # the lowest: any thread of the gateway woken on this core preempts a batch at once


def _open(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-256")  # appends touch only the right edge of each B-tree
    return conn


def apply(conn: sqlite3.Connection, statements: list[list[object]]) -> list[str]:
    """One batch: every statement in one transaction."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                conn.executemany(str(sql), params)  # type: ignore[arg-type]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.IntegrityError:
        return ["integrity"]
    except Exception as exc:  # noqa: BLE001 - told to the gateway, which falls back to its own thread
        return ["error", f"{type(exc).__name__}: {exc}"]
    return ["ok"]


def main(argv: list[str] | None = None) -> int:
    (path,) = argv if argv is not None else sys.argv[1:]
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    except (AttributeError, OSError):
        pass
    conn = _open(path)
    out = sys.stdout.buffer
    try:
        for line in sys.stdin.buffer:
            try:
                reply = apply(conn, orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                reply = ["error", f"JSONDecodeError: {exc}"]
            out.write(orjson.dumps(reply, option=orjson.OPT_APPEND_NEWLINE))
            out.flush()
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
