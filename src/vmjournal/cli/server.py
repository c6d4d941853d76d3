"""The commands that run the server side: ``serve`` and ``db upgrade``.

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
