"""The service under test: in this process (uvicorn on the test's event loop) or as its own process
(``python -m support.serve``, for SIGKILL, restarts and two processes on one database)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import uvicorn
from fastapi import FastAPI

from support.provider import ScriptedProvider
from vmjournal.background import stacks
from vmjournal.config import Settings

# The folder that holds ``support``: a service process imports ``support.serve`` from there.
TESTS = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# The database migrated once per session; each test's database is a copy of it.
TEMPLATE = "vmjournal_test_template"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def test_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "port": free_port(),
        "provider": "test",
        "job_heartbeat_seconds": 0.5,
        "job_stale_seconds": 3.0,
        # Test journals carry fixed timestamps from long ago: retention would drop them. The
        # retention tests set it themselves.
        "retention_days": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Service:
    url: str
    client: httpx.AsyncClient
    settings: Settings
    provider: ScriptedProvider
    database_url: str


# The ``service_factory`` fixture: ``async with service_factory(**settings_overrides) as svc``.
ServiceFactory = Callable[..., AbstractAsyncContextManager[Service]]


@asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` on a loopback port from this event loop; a client for it until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await stopped(task)


# Far above a clean stop (well under a second), far below pytest-timeout's limit.
STOP_SECONDS = 60


async def stopped(serve: asyncio.Task[None]) -> None:
    """Wait for the server's task to end; a stop that hangs fails with every task's stack, which
    pytest-timeout's thread dump cannot show (the loop just sits idle in select)."""
    try:
        async with asyncio.timeout(STOP_SECONDS):
            await asyncio.shield(serve)
    except TimeoutError:
        others = asyncio.all_tasks() - {asyncio.current_task()}
        raise AssertionError(f"the service did not stop in {STOP_SECONDS}s; its tasks:\n{stacks(others)}") from None


def service_env(database_url: str, data_dir: Path, **env: str) -> dict[str, str]:
    """This process's environment without its VMJOURNAL_ settings, plus a service's own."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")}
    values |= {
        "VMJOURNAL_DATABASE_URL": database_url,
        "VMJOURNAL_DATA_DIR": str(data_dir),
        "VMJOURNAL_PORT": str(free_port()),
        "VMJOURNAL_PROVIDER": "test",
        "VMJOURNAL_JOB_HEARTBEAT_SECONDS": "0.5",
        "VMJOURNAL_JOB_STALE_SECONDS": "3",
        "VMJOURNAL_RETENTION_DAYS": "0",  # see test_settings
    }
    return values | env


class LiveService:
    """The service as its own process (``support/serve.py``): the real app plus the test provider."""

    def __init__(self, env: Mapping[str, str], log_path: Path, slow_seconds: float) -> None:
        path = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
        self.env = {**env, "PYTHONPATH": path}
        self.port = int(env["VMJOURNAL_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(env["VMJOURNAL_DATA_DIR"])
        self.log_path = log_path
        self.slow_seconds = slow_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.provider = ScriptedProvider(self.data_dir / "test-provider")

    def start(self, timeout: float = 60) -> LiveService:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "support.serve", str(self.slow_seconds)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
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
