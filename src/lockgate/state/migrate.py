"""Running the bundled Alembic migrations programmatically (at start-up and by ``lockgate db upgrade``).

Alembic (with Mako) is imported only when a migration really has to run: its import costs ~0.1 s
and ~10 MB that the serving process would keep for nothing.

- A database already at ``HEAD`` (one ``SELECT`` on ``alembic_version``) is left as it is.
- A new database (none of our tables, no ``alembic_version``) gets the models' schema with
  ``metadata.create_all`` and is stamped ``HEAD`` in the same transaction: what Alembic's
  documentation recommends for building an up-to-date database from scratch (a test checks
  that the result equals running every migration).
- Anything else (an older revision) runs the Alembic migrations.

``HEAD`` must name the newest revision in ``migrations/versions`` (a test checks it against Alembic).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from .models import Base

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0009"


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# the table Alembic keeps its revision in, as Alembic creates it
_VERSION_TABLE = Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                       PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to run again (already applied revisions are skipped)."""
    if revision in ("head", HEAD):
        if await at_head(engine):
            return
        try:
            async with engine.begin() as connection:
                if await connection.run_sync(_create_if_new):
                    return
        except Exception:
            if await at_head(engine):  # another process created it at the same moment
                return
            raise
    await run_alembic(engine, revision)


def _create_if_new(connection) -> bool:
    """On a database holding none of our tables: the schema at HEAD, stamped.  False otherwise.

    All or nothing: PostgreSQL's DDL is transactional; Python's sqlite3 runs DDL outside any
    transaction unless one was begun, so on SQLite it is begun here (a crash half-way through
    must not leave half a schema that neither this path nor Alembic would take up)."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    present = set(inspect(connection).get_table_names())
    if present & (set(Base.metadata.tables) | {_VERSION_TABLE.name}):
        return False
    Base.metadata.create_all(connection)
    _VERSION_TABLE.create(connection)
    connection.execute(_VERSION_TABLE.insert().values(version_num=HEAD))
    return True


async def run_alembic(engine: AsyncEngine, revision: str = "head") -> None:
    """The Alembic migrations themselves (``upgrade`` calls this only when it must)."""
    from alembic import command

    def run(connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def current(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def at_head(engine: AsyncEngine) -> bool:
    """True when ``alembic_version`` says ``HEAD`` (False when the table is missing)."""
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    except Exception:  # noqa: BLE001 - no table yet: a new database
        return False
    return rows == [HEAD]
