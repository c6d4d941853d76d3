"""The commands that run the server side: ``serve``, ``db upgrade`` and ``db prune``.

They import the service (FastAPI, SQLAlchemy, the providers) inside the command, so that every other
command starts without loading it.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from vmjournal.cli.exits import ExitCode
from vmjournal.cli.runner import fail


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (VMJOURNAL_HOST, default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (VMJOURNAL_PORT, default 8000).")] = None,
) -> None:
    """Run the service: HTTP API, web page and provisioning worker."""
    import uvicorn

    from vmjournal.config import Settings
    from vmjournal.main import InsecureBinding, check_binding

    # Settings are read by the app factory; pass host and port through the environment it reads.
    if host:
        os.environ["VMJOURNAL_HOST"] = host
    if port:
        os.environ["VMJOURNAL_PORT"] = str(port)
    settings = Settings()
    try:
        check_binding(settings)
    except InsecureBinding as exc:
        raise fail(str(exc), ExitCode.USAGE) from None
    uvicorn.run(
        "vmjournal.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        log_level="info",
        # Follow streams never end on their own; without this a restart would wait for every reader.
        timeout_graceful_shutdown=5,
    )


def db_upgrade() -> None:
    """Apply pending migrations (the service also does this when it starts)."""
    import asyncio

    from vmjournal import db
    from vmjournal.config import Settings

    url, _ = db.resolve_database_url(Settings())
    asyncio.run(db.upgrade(url))
    typer.echo("database is up to date")


def db_prune() -> None:
    """Apply journal retention now (VMJOURNAL_RETENTION_DAYS, VMJOURNAL_RETENTION_MAX_BYTES): drop
    the day partitions it says go, and print each."""
    import asyncio

    from vmjournal import db
    from vmjournal.config import Settings
    from vmjournal.journal import retention

    settings = Settings()
    url, embedded = db.resolve_database_url(settings)

    async def run() -> list[retention.Dropped] | None:
        await db.upgrade(url)
        engine = db.create_engine(url, pool_size=2, max_overflow=0)
        try:
            return await retention.prune_pass(db.session_factory(engine), settings)
        finally:
            await engine.dispose()

    try:
        dropped = asyncio.run(run())
    finally:
        if embedded is not None:
            db.release(embedded)
    if dropped is None:
        raise fail("another process is pruning now; try again later", ExitCode.ERROR)
    for d in dropped:
        typer.echo(f"dropped {d.partition.day} ({d.entries} entries, {d.partition.bytes} bytes): {d.reason}")
    typer.echo(f"{len(dropped)} day(s) dropped" if dropped else "nothing to prune")
