"""Alembic environment: runs on the async engine through ``run_sync``.

Lockgate calls ``lockgate.state.migrate.upgrade(engine)``, which hands the open connection in through
``config.attributes["connection"]``; nothing is downloaded and no ``alembic.ini`` is needed.
"""

from __future__ import annotations

import asyncio

from alembic import context

from lockgate.state.db import create_engine
from lockgate.state.models import Base

target_metadata = Base.metadata


def run_on(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(run_on)
        await connection.commit()
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_on(connection)
elif context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_with_url(context.config.get_main_option("sqlalchemy.url") or ""))
