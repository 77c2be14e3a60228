"""Fixtures and helpers shared by the storage and management API tests (no tests here).

Every test runs on SQLite and on PostgreSQL (127.0.0.1:5432, or LOCKGATE_TEST_POSTGRES_URL).  Each run
creates its own ``lockgate_test_<random>`` database and drops it afterwards; an unreachable PostgreSQL
makes the tests fail, never skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import MASTER_KEY, start_gateway

PG_SERVER = os.environ.get("LOCKGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_SERVER, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro) -> None:  # noqa: ANN001
    """Run a coroutine from sync code, also when called inside the session's running event loop."""
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test module; dropped at the end."""
    name = f"lockgate_test_{uuid.uuid4().hex[:12]}"
    _run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_SERVER.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def database_for(backend: str, tmp: Path) -> Iterator[str]:
    """A database URL as an operator would write it (``postgresql://`` or a SQLite file)."""
    if backend == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp / 'lockgate.db'}"


def gateway_settings(database_url: str | None) -> dict:
    config: dict = {
        "model_list": [{"model_name": "mock-model",
                        "litellm_params": {"model": "mock/mock-model", "mock_response": "hello"}}],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"cache": True},  # the /cache/* routes are part of the role matrix
        "guardrails": [{"guardrail_name": "size", "litellm_params": {  # and /guardrails/*
            "guardrail": "lockgate_max_input_size", "mode": "pre_call", "max_chars": 100000}}],
    }
    if database_url:
        config["general_settings"]["database_url"] = database_url
    return config


class Admin:
    """A small HTTP client for the management API of a running gateway."""

    def __init__(self, url: str, key: str = MASTER_KEY) -> None:
        self.url = url
        self.key = key
        self.http = httpx.Client(base_url=url, timeout=20, headers={"Authorization": f"Bearer {key}"})

    def as_key(self, key: str) -> "Admin":
        return Admin(self.url, key)

    def post(self, path: str, body: dict | None = None, **headers: str) -> httpx.Response:
        return self.http.post(path, json=body or {}, headers=headers)

    def get(self, path: str, **params: object) -> httpx.Response:
        return self.http.get(path, params={k: v for k, v in params.items() if v is not None})

    def ok(self, method: str, path: str, body: dict | None = None, **params: object) -> dict:
        resp = self.post(path, body) if method == "POST" else self.get(path, **params)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        return resp.json()


@pytest.fixture(scope="module", params=BACKENDS)
def running(request, tmp_path_factory):
    """A gateway process on a fresh database (SQLite file next to its config, or PostgreSQL)."""
    tmp = tmp_path_factory.mktemp(f"admin-{request.param}")
    with database_for(request.param, tmp) as url:
        gw = start_gateway(gateway_settings(url if request.param == "postgresql" else None), tmp)
        gw.backend = request.param
        gw.database_url = url
        try:
            yield gw
        finally:
            gw.process.terminate()
            gw.process.wait(10)


@pytest.fixture(scope="module")
def admin(running) -> Admin:
    return Admin(running.url)
