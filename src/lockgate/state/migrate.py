"""Running the bundled Alembic migrations programmatically (at start-up and by ``lockgate db upgrade``).

At start-up a database already at ``HEAD`` (one ``SELECT`` on ``alembic_version``) skips Alembic
altogether: its import (with Mako) costs ~0.1 s and several MB for nothing.  ``HEAD`` must name the
newest revision in ``migrations/versions`` (a test checks it against Alembic's own view).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0001"


def alembic_config(url: str | None = None) -> "Config":
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to run again (already applied revisions are skipped)."""

    if revision in ("head", HEAD) and await at_head(engine):
        return
    from alembic import command

    def run(connection) -> None:  # noqa: ANN001
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def current(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(connection) -> str | None:  # noqa: ANN001
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
