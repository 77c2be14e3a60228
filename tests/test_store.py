"""SQLStore on SQLite and PostgreSQL: migrations, CRUD, idempotent spend, budget resets after downtime."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import inspect, select, text

from lockgate.governance.types import SpendRecord
from lockgate.state.timetext import utc_text
from lockgate.state import Audit, durations, migrate, open_store
from lockgate.state.db import database_url, normalize_url
from lockgate.state.models import AuditLog, Base, ProxyBudget, SpendLog
from tests.test_admin_support import BACKENDS, database_for

T0 = datetime(2025, 1, 31, 12, 0, tzinfo=timezone.utc)


def settings(url: str, **extra) -> SimpleNamespace:
    return SimpleNamespace(database_url=url, database_path=None, max_budget=extra.get("max_budget"),
                           budget_duration=extra.get("budget_duration"))


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    with database_for(request.param, tmp_path) as url:
        st = await open_store(settings(url, max_budget=100.0, budget_duration="1d"), tmp_path)
        try:
            yield st
        finally:
            await st.close()


def record(i: int | str, spend: float = 0.25, **overrides) -> SpendRecord:
    values = dict(request_id=f"req-{i}", api_key="k" * 64, user_id="alice", team_id="team-a",
                  organization_id="org-a", end_user="customer-1", model_group="gpt", model="gpt-4o",
                  deployment_id="d1", provider="openai", route="chat", prompt_tokens=10, completion_tokens=5,
                  cached_tokens=0, spend=spend, status=200, start_time=utc_text(T0), end_time=utc_text(T0 + timedelta(seconds=1)))
    values.update(overrides)
    return SpendRecord(**values)


async def seed(st) -> None:  # noqa: ANN001
    await st.create("organization", {"organization_id": "org-a", "models": [], "metadata": {}})
    await st.create("team", {"team_id": "team-a", "organization_id": "org-a", "models": ["gpt"], "metadata": {},
                             "max_budget": 50.0})
    await st.create("user", {"user_id": "alice", "user_role": "internal_user", "models": [], "metadata": {}})
    await st.create("key", {"token_hash": "k" * 64, "key_name": "sk-...abcd", "user_id": "alice",
                            "team_id": "team-a", "models": ["gpt"], "metadata": {"env": "test"},
                            "model_max_budget": {"gpt": 1.5}, "allowed_ips": ["10.0.0.0/8"],
                            "rpm_limit": 7, "allowed_routes": [], "model_rpm_limit": {}, "model_tpm_limit": {}})


def test_head_constant_names_the_newest_migration():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(migrate.alembic_config()).get_heads() == [migrate.HEAD]


async def test_start_up_skips_alembic_at_head(store):
    assert await migrate.at_head(store.engine)
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    assert not await migrate.at_head(store.engine)


async def test_migrations_create_every_table_and_match_the_models(store):
    async with store.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert await migrate.current(store.engine) == migrate.HEAD
    await store.migrate()  # a second run is a no-op
    assert await migrate.current(store.engine) == migrate.HEAD

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def diff(conn):  # noqa: ANN001, ANN202
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


def _schema(conn) -> dict:  # noqa: ANN001
    """Tables with their columns, primary keys, indexes, unique constraints and foreign keys."""
    insp = inspect(conn)
    out = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in insp.get_columns(table)],
            "pk": insp.get_pk_constraint(table),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)),
            "fks": sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(table)),
        }
    return out


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_new_database_gets_the_schema_the_migrations_build(backend, tmp_path):
    """Start-up creates a new database with create_all + stamp (no Alembic import): same schema."""
    from lockgate.state.db import create_engine

    schemas = {}
    for how in ("create_all", "alembic"):
        (tmp_path / how).mkdir()
        with database_for(backend, tmp_path / how) as url:
            engine = create_engine(normalize_url(url))
            try:
                await (migrate.upgrade(engine) if how == "create_all" else migrate.run_alembic(engine))
                assert await migrate.current(engine) == migrate.HEAD
                async with engine.connect() as conn:
                    schemas[how] = await conn.run_sync(_schema)
            finally:
                await engine.dispose()
    assert set(schemas["create_all"]) == set(Base.metadata.tables) | {"alembic_version"}
    assert schemas["create_all"] == schemas["alembic"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_upgrading_from_0001_keeps_spend_rows_and_drops_the_per_request_indexes(backend, tmp_path):
    """A database created by an earlier release (revision 0001) is migrated at start, rows kept."""
    from lockgate.state.db import create_engine

    with database_for(backend, tmp_path) as url:
        engine = create_engine(normalize_url(url))
        try:
            await migrate.run_alembic(engine, "0001")
            async with engine.begin() as conn:
                before = {i["name"] for i in await conn.run_sync(lambda c: inspect(c).get_indexes("spend_logs"))}
                await conn.execute(text(
                    "INSERT INTO spend_logs (request_id, api_key, model_group, route, prompt_tokens, completion_tokens,"
                    " cached_tokens, spend, status, start_time, end_time, metadata) VALUES ('r1', 'k', 'gpt', 'chat',"
                    " 1, 2, 0, 0.5, 200, '2026-01-01 00:00:00', '2026-01-01 00:00:01', '{}')"))
            assert "ix_spend_logs_api_key" in before
            await migrate.upgrade(engine)
            assert await migrate.current(engine) == migrate.HEAD
            async with engine.connect() as conn:
                after = {i["name"] for i in await conn.run_sync(lambda c: inspect(c).get_indexes("spend_logs"))}
                rows = (await conn.execute(text("SELECT request_id, spend FROM spend_logs"))).all()
            assert after == {"ix_spend_logs_start_time", "ix_spend_logs_user_id_start_time"}  # + 0005 (the UI)
            assert [tuple(r) for r in rows] == [("r1", 0.5)]
        finally:
            await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_creating_a_new_database_is_all_or_nothing(backend, tmp_path, monkeypatch):
    from lockgate.state.db import create_engine

    with database_for(backend, tmp_path) as url:
        engine = create_engine(normalize_url(url))
        try:
            def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                raise RuntimeError("crash after the tables, before the stamp")

            monkeypatch.setattr(migrate._VERSION_TABLE, "create", fail)
            with pytest.raises(RuntimeError):
                await migrate.upgrade(engine)
            async with engine.connect() as conn:
                assert await conn.run_sync(lambda c: inspect(c).get_table_names()) == []
            monkeypatch.undo()
            await migrate.upgrade(engine)  # the next start creates it whole
            assert await migrate.current(engine) == migrate.HEAD
        finally:
            await engine.dispose()


async def test_crud_principal_and_cascading_delete(store):
    await seed(store)
    principal = await store.principal_for_key("k" * 64)
    assert principal.key.user_id == "alice" and principal.key.models == ["gpt"]
    assert principal.key.limits.rpm_limit == 7 and principal.key.allowed_ips == ["10.0.0.0/8"]
    assert principal.key.model_max_budget == {"gpt": 1.5} and principal.key.metadata == {"env": "test"}
    assert principal.user.role == "internal_user" and principal.user.kind == "user"
    assert principal.team.id == "team-a" and principal.team.limits.max_budget == 50.0
    assert principal.organization.id == "org-a"  # through the team
    assert await store.principal_for_key("0" * 64) is None

    before, after = await store.update("team", "team-a", {"max_budget": 75.0, "budget_duration": "7d"},
                                       Audit("master", "127.0.0.1", "pytest"))
    assert before["max_budget"] == 50.0 and after["max_budget"] == 75.0
    assert after["budget_reset_at"] > durations.utcnow() + timedelta(days=6)
    assert await store.update("team", "missing", {"max_budget": 1.0}) is None

    await store.set_members("team-a", [{"user_id": "alice", "role": "admin"}], [])
    assert await store.memberships("alice") == {"team-a": "admin"}
    rows, total = await store.list("key", {"user_id": "alice"})
    assert total == 1 and rows[0]["token_hash"] == "k" * 64

    deleted = await store.delete("user", ["alice"], Audit("master"))
    assert [k["token_hash"] for k in deleted[0]["_keys"]] == ["k" * 64]
    assert await store.get("key", "k" * 64) is None
    assert await store.memberships("alice") == {}
    async with store.sessions() as s:
        actions = [(a.action, a.table_name) for a in await s.scalars(select(AuditLog))]
    assert ("updated", "teams") in actions and ("deleted", "keys") in actions and ("deleted", "users") in actions


async def test_apply_spend_is_idempotent_on_replay(store):
    await seed(store)
    await store.create("customer", {"user_id": "customer-1", "models": [], "metadata": {}})
    batch = [record(i) for i in range(4)]
    assert await store.apply_spend(batch) == 4
    assert await store.apply_spend(batch) == 0  # replay of a journal after a crash
    assert await store.apply_spend(batch[2:] + [record(9, spend=1.0)]) == 1  # partly new
    assert await store.apply_spend([record(10, spend=0.5), record(10, spend=0.5)]) == 1  # duplicate in a batch
    # "fresh" (the writer's in-memory hand-over) skips the id lookup on SQLite; an id that is
    # there after all rolls that back and takes the checked path: still counted once
    assert await store.apply_spend([record(11, spend=0.25), record(12, spend=0.25)], fresh=True) == 2
    assert await store.apply_spend([record(12, spend=0.25), record(13, spend=0.25)], fresh=True) == 1

    principal = await store.principal_for_key("k" * 64)
    assert principal.key.limits.spend == pytest.approx(3.25)
    assert principal.key.model_spend == {"gpt": pytest.approx(3.25)}
    assert principal.user.limits.spend == pytest.approx(3.25)
    assert principal.team.limits.spend == pytest.approx(3.25)
    assert principal.organization.limits.spend == pytest.approx(3.25)
    assert (await store.customer("customer-1")).limits.spend == pytest.approx(3.25)
    assert (await store.proxy_budget()).spend == pytest.approx(3.25)
    async with store.sessions() as s:
        assert len((await s.scalars(select(SpendLog))).all()) == 9

    # an end user seen for the first time is created with its spend
    assert await store.apply_spend([record("new-cust", spend=0.75, end_user="customer-2")]) == 1
    assert (await store.customer("customer-2")).limits.spend == pytest.approx(0.75)


async def test_concurrent_writers_count_each_record_once(store):
    await seed(store)
    batch = [record(f"c{i}", spend=0.1) for i in range(20)]
    counts = await asyncio.gather(*(store.apply_spend(batch) for _ in range(4)))
    assert sum(counts) == 20
    assert (await store.principal_for_key("k" * 64)).key.limits.spend == pytest.approx(2.0)


async def test_budget_reset_after_downtime_keeps_the_schedule(store):
    await seed(store)
    await store.update("key", "k" * 64, {"budget_duration": "1h", "spend": 3.0})
    await store.update("key", "k" * 64, {"budget_reset_at": T0})
    await store.update("user", "alice", {"budget_duration": "1mo", "spend": 2.0})
    await store.update("user", "alice", {"budget_reset_at": T0})  # Jan 31
    await store.update("team", "team-a", {"budget_duration": "1d", "spend": 4.0})
    await store.update("team", "team-a", {"budget_reset_at": T0 + timedelta(days=60)})  # not due
    await store.apply_spend([record("r1", spend=1.0)])
    async with store.sessions.begin() as s:
        row = await s.get(ProxyBudget, 1)
        row.budget_reset_at = T0

    now = T0 + timedelta(days=43, hours=3, minutes=30)  # down from Jan 31 to Mar 15
    assert await store.reset_due_budgets(now) == 3  # the key, the user and the proxy budget

    key = (await store.principal_for_key("k" * 64)).key
    assert key.limits.spend == 0.0 and key.model_spend == {"gpt": 0.0}
    assert key.limits.budget_reset_at == T0 + timedelta(days=43, hours=4)  # on the hour, not "now + 1h"
    user = await store.get("user", "alice")
    assert user["spend"] == 0.0
    assert user["budget_reset_at"] == datetime(2025, 3, 31, 12, 0, tzinfo=timezone.utc)  # month ends kept
    team = await store.get("team", "team-a")
    assert team["spend"] == pytest.approx(5.0) and team["budget_reset_at"] == T0 + timedelta(days=60)
    budget = await store.proxy_budget()
    assert budget.spend == 0.0 and budget.budget_reset_at == T0 + timedelta(days=44)

    assert await store.reset_due_budgets(now) == 0  # nothing more is due
    assert (await store.get("team", "team-a"))["spend"] == pytest.approx(5.0)


def test_durations():
    assert durations.parse("30s") == (30, "s") and durations.parse("1mo") == (1, "mo")
    for bad in ("", "0d", "1y", "d", "-1h", "1.5h"):
        assert not durations.is_valid(bad), bad
    assert durations.add(T0, "1mo") == datetime(2025, 2, 28, 12, 0, tzinfo=timezone.utc)
    assert durations.add(T0, "7d") == T0 + timedelta(days=7)
    assert durations.next_reset_after(T0, "30s", T0 + timedelta(seconds=95)) == T0 + timedelta(seconds=120)
    assert durations.next_reset_after(T0, "1d", T0) == T0 + timedelta(days=1)


def test_database_url_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert normalize_url("postgres://u:p@h:5432/db") == "postgresql+asyncpg://u:p@h:5432/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert database_url(None, None, tmp_path) == f"sqlite+aiosqlite:///{tmp_path / 'lockgate.db'}"
    assert database_url(None, "state/x.db", tmp_path) == f"sqlite+aiosqlite:///{tmp_path / 'state/x.db'}"
    monkeypatch.setenv("DATABASE_URL", "postgres://env/db")
    assert database_url(None, None, tmp_path) == "postgresql+asyncpg://env/db"
    assert database_url("postgresql://cfg/db", None, tmp_path) == "postgresql+asyncpg://cfg/db"


async def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    st = await open_store(settings(None), tmp_path)
    try:
        async with st.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() >= 1000
        assert (tmp_path / "lockgate.db").exists()
    finally:
        await st.close()


def test_db_upgrade_command(tmp_path):
    import subprocess
    import sys

    (tmp_path / "config.yaml").write_text("model_list: []\nlockgate_settings:\n  database_path: ops.db\n")
    out = subprocess.run([sys.executable, "-m", "lockgate.cli", "db", "upgrade", "--config",
                          str(tmp_path / "config.yaml")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ops.db").exists() and migrate.HEAD in out.stdout
