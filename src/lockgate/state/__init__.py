"""Storage: SQLAlchemy models, bundled Alembic migrations and ``SQLStore`` (see docs/architecture.md).

``open_store(settings, config_dir)`` is the entry point: it builds the engine (SQLite file next to the
config by default, PostgreSQL when ``general_settings.database_url`` or ``DATABASE_URL`` is set), runs
the migrations and syncs the global proxy budget from the config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .db import create_engine, database_url, redacted
from .store import Audit, SQLStore

log = logging.getLogger("lockgate.state")

__all__ = ["Audit", "SQLStore", "open_store", "url_for"]


def url_for(settings: Any, config_dir: Path | str | None) -> str:
    return database_url(getattr(settings, "database_url", None), getattr(settings, "database_path", None),
                        Path(config_dir) if config_dir else Path.cwd())


async def open_store(settings: Any, config_dir: Path | str | None, *, migrate: bool = True) -> SQLStore:
    url = url_for(settings, config_dir)
    store = SQLStore(create_engine(url))
    try:
        if migrate:
            await store.migrate()
        await store.configure_proxy_budget(getattr(settings, "max_budget", None),
                                           getattr(settings, "budget_duration", None))
    except Exception:
        await store.close()
        raise
    log.info("database: %s (%s)", redacted(url), store.dialect)
    return store
