"""``spend_rollup``: spend_logs summed per 15-minute UTC bucket and model group.

The spend writer adds each batch to its buckets (``batch``: one upsert per bucket and model group in the
batch, usually one, in the transaction that inserts the rows), so the rollup always equals the sum of the
rows: the admin UI's overview, day totals and by-model usage read ~3,000 rollup rows per month per model
instead of every spend row.  A per-row trigger did the same at ~25 µs of the writer's CPU per row on the
embedded SQLite (on the event loop); summed in Python per batch it is ~2 µs.  Deleted rows (a retention
job) are taken out by a trigger on DELETE, which costs inserts nothing.  Every timezone in use is a
multiple of 15 minutes from UTC, so each bucket lies within one local day.

Created by migration 0005 and, on a new database, after ``metadata.create_all`` (``install``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ..governance.types import SpendRecord

COLUMNS = ("bucket", "model_group", "requests", "errors", "spend", "prompt_tokens", "completion_tokens",
           "latency_ms", "ttft_ms", "ttft_count")
MEASURES = COLUMNS[2:]

_SQLITE_BUCKET = ("substr({t}, 1, 14) || CASE WHEN substr({t}, 15, 2) < '15' THEN '00' WHEN substr({t}, 15, 2) < '30'"
                  " THEN '15' WHEN substr({t}, 15, 2) < '45' THEN '30' ELSE '45' END || ':00.000000'")
# end - start in ms, exact to the microsecond (julianday() keeps whole milliseconds only)
SQLITE_LATENCY_MS = ("((strftime('%s', {e}) - strftime('%s', {s})) * 1000.0"
                     " + (substr({e}, 21, 6) - substr({s}, 21, 6)) / 1000.0)")
_SQLITE_TTFT = ("CASE WHEN json_valid({r}.metadata) AND json_type({r}.metadata, '$.ttft_ms') IN ('integer', 'real')"
                " THEN json_extract({r}.metadata, '$.ttft_ms') END")


def _sqlite_values(r: str, sign: str) -> str:
    ttft = _SQLITE_TTFT.format(r=r)
    return ", ".join([
        _SQLITE_BUCKET.format(t=f"{r}.start_time"), f"{r}.model_group", f"{sign}1",
        f"{sign}({r}.status >= 400)", f"{sign}{r}.spend", f"{sign}{r}.prompt_tokens", f"{sign}{r}.completion_tokens",
        f"{sign}" + SQLITE_LATENCY_MS.format(s=f"{r}.start_time", e=f"{r}.end_time"),
        f"{sign}coalesce({ttft}, 0.0)", f"{sign}({ttft} IS NOT NULL)"])


_UPSERT = (" ON CONFLICT (bucket, model_group) DO UPDATE SET "
           + ", ".join(f"{m} = spend_rollup.{m} + excluded.{m}" for m in MEASURES))

UPSERT_SQL = f"INSERT INTO spend_rollup ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}){_UPSERT}"

SQLITE = [
    f"CREATE TRIGGER spend_rollup_delete AFTER DELETE ON spend_logs BEGIN "
    f"INSERT INTO spend_rollup ({', '.join(COLUMNS)}) VALUES ({_sqlite_values('OLD', '-')}){_UPSERT}; END",
]

_PG_SELECT = (
    "SELECT date_trunc('hour', start_time) + floor(extract(minute FROM start_time) / 15) * interval '15 minutes',"
    " model_group, {s}count(*), {s}count(*) FILTER (WHERE status >= 400), {s}sum(spend), {s}sum(prompt_tokens),"
    " {s}sum(completion_tokens), {s}sum(extract(epoch FROM end_time - start_time) * 1000),"
    " {s}coalesce(sum(CASE WHEN json_typeof(metadata -> 'ttft_ms') = 'number'"
    " THEN (metadata ->> 'ttft_ms')::float8 END), 0),"
    " {s}count(CASE WHEN json_typeof(metadata -> 'ttft_ms') = 'number' THEN 1 END)"
    " FROM {rows} GROUP BY 1, 2 ORDER BY 1, 2")


def _pg_function(name: str, rows: str, sign: str) -> str:
    return (f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"INSERT INTO spend_rollup ({', '.join(COLUMNS)}) {_PG_SELECT.format(s=sign, rows=rows)}{_UPSERT}; "
            "RETURN NULL; END $$")


POSTGRESQL = [
    _pg_function("spend_rollup_remove", "old_rows", "-"),
    "CREATE TRIGGER spend_rollup_delete AFTER DELETE ON spend_logs REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION spend_rollup_remove()",
]

# what spend_logs already holds when the rollup is created (migration 0005)
BACKFILL = {
    "sqlite": f"INSERT INTO spend_rollup ({', '.join(COLUMNS)}) SELECT "
              + _SQLITE_BUCKET.format(t="start_time") + ", model_group, count(*), sum(status >= 400), sum(spend),"
              " sum(prompt_tokens), sum(completion_tokens),"
              f" sum({SQLITE_LATENCY_MS.format(s='start_time', e='end_time')}),"
              f" coalesce(sum({_SQLITE_TTFT.format(r='spend_logs')}), 0.0),"
              f" count({_SQLITE_TTFT.format(r='spend_logs')}) FROM spend_logs GROUP BY 1, 2",
    "postgresql": f"INSERT INTO spend_rollup ({', '.join(COLUMNS)}) "
                  + _PG_SELECT.format(s="", rows="spend_logs"),
}

DROP = {
    "sqlite": ["DROP TRIGGER IF EXISTS spend_rollup_delete"],
    "postgresql": ["DROP TRIGGER IF EXISTS spend_rollup_delete ON spend_logs",
                   "DROP FUNCTION IF EXISTS spend_rollup_remove()"],
}


_QUARTERS = ("00:00.000000", "15:00.000000", "30:00.000000", "45:00.000000")
Bucket = tuple[str, str, int, int, float, int, int, float, float, int]  # COLUMNS, bucket as UTC text


def batch(records: list[SpendRecord]) -> list[Bucket]:
    """New spend rows summed per (15-minute bucket, model group), in a fixed order (row locks in order).
    Times are the records' UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``); a bucket is the same text form."""
    sums: dict[tuple[str, str], list[Any]] = {}
    parse = datetime.fromisoformat
    for r in records:
        start = r.start_time
        key = (start[:14] + _QUARTERS[int(start[14:16]) // 15], r.model_group)
        s = sums.get(key)
        if s is None:
            s = sums[key] = [0, 0, 0.0, 0, 0, 0.0, 0.0, 0]
        s[0] += 1
        s[1] += r.status >= 400
        s[2] += r.spend
        s[3] += r.prompt_tokens
        s[4] += r.completion_tokens
        s[5] += (parse(r.end_time) - parse(start)).total_seconds() * 1000
        if '"ttft_ms"' in r.metadata:
            ttft = orjson.loads(r.metadata).get("ttft_ms")
            if type(ttft) in (int, float):  # a number (not a boolean, not text) is a time
                s[6] += ttft
                s[7] += 1
    return [(bucket, group, *values) for (bucket, group), values in sorted(sums.items())]


def statements(dialect: str) -> list[str]:
    """The DELETE trigger DDL for ``dialect`` (``sqlite`` or ``postgresql``)."""
    return SQLITE if dialect == "sqlite" else POSTGRESQL


def install(target: Any, connection: Any, **_kw: Any) -> None:
    """``after_create`` of the metadata: the triggers on a database built by ``create_all``."""
    if "spend_rollup" not in target.tables:
        return
    for sql in statements(connection.dialect.name):
        connection.exec_driver_sql(sql)
