"""``lockgate serve | check-config | db upgrade | --version``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

import orjson

from . import __version__, config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lockgate", description="Lockgate LLM gateway")
    parser.add_argument("--version", action="version", version=f"lockgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="LiteLLM-style config.yaml")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    check = sub.add_parser("check-config", help="validate a config and print the resolved models")
    check.add_argument("config")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="run the bundled migrations (also done at every start)")
    upgrade.add_argument("--config", required=True, help="LiteLLM-style config.yaml")
    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "db":
        return db_upgrade(args.config)
    return serve_command(args)


def check_config(path: str) -> int:
    try:
        settings = config.load(path)
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from .governance.cost import unpriced

    for dep in unpriced(settings.deployments):
        print(f"warning: deployment {dep.id} (model_name {dep.model_name!r}, model {dep.provider}/{dep.model}) has no "
              "price: its requests cost 0 and escape every budget", file=sys.stderr)
    summary = {
        "master_key": config.mask(settings.master_key),
        "models": [d.masked() for d in settings.deployments],
    }
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


def db_upgrade(path: str) -> int:
    """``lockgate db upgrade --config FILE``: migrate the configured database, offline, then exit."""
    import asyncio
    from pathlib import Path

    from .state import migrate, url_for
    from .state.db import create_engine, redacted

    try:
        settings = config.load(path)
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    url = url_for(settings, Path(path).resolve().parent)

    async def run() -> str | None:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            return await migrate.current(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(run())
    except Exception as exc:  # noqa: BLE001
        print(f"error: migrating {redacted(url)} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"database {redacted(url)} is at revision {revision}")
    return 0


def serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = config.load(args.config)  # fail fast, before any worker starts
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    os.environ["LOCKGATE_CONFIG"] = os.path.abspath(args.config)
    if args.workers > 1:
        # migrate once, before the workers start (they would race on a new database); in a child
        # process, so the supervisor does not keep SQLAlchemy and Alembic in memory
        import subprocess

        done = subprocess.run([sys.executable, "-m", "lockgate.cli", "db", "upgrade", "--config", args.config],
                              stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            return done.returncode
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lockgate-metrics-")
    service = None
    if args.workers > 1 and not settings.redis_url:
        # no Redis: the workers share one set of counters through a small local process
        from .state.counters_client import SOCKET_ENV
        from .state.counters_service import ServiceProcess

        service = ServiceProcess()
        try:
            service.start()
        except (OSError, RuntimeError) as exc:
            service.stop()
            print(f"error: {exc}; without it, limits would not hold across --workers (or configure Redis)",
                  file=sys.stderr)
            return 1
        os.environ[SOCKET_ENV] = service.path
    try:
        _run(args, settings)
    finally:
        if service is not None:
            service.stop()
    return 0


def _run(args: argparse.Namespace, settings: config.Settings) -> None:
    """uvicorn (its supervisor with --workers N); each serving process takes SIGTERM / SIGINT over at start-up
    for the graceful shutdown (shutdown.py), the timeout given here only bounds uvicorn if it could not."""
    import math

    import uvicorn

    from .malloc import one_arena
    from .shutdown import END_MARGIN

    one_arena()  # as early as possible; each worker process does it again in create_app()

    uvicorn.run(
        "lockgate.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="lockgate.transport.server_protocol:LeanHttpToolsProtocol",  # httptools, a lean cycle per request
        ws="none",  # no WebSocket route (no realtime API): not importing websockets saves ~2.5 MB of RSS
        lifespan="on",
        access_log=False,
        log_level=args.log_level,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown_timeout + END_MARGIN),
    )


if __name__ == "__main__":
    sys.exit(main())
