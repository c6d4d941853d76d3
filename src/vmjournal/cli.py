"""The ``vmjournal`` command line."""

from __future__ import annotations

import asyncio
import os

import typer

from vmjournal.config import Settings

app = typer.Typer(help="vmjournal: create Linux VMs and read their systemd journals.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to listen on (default VMJOURNAL_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default VMJOURNAL_PORT or 8000)."),
) -> None:
    """Run the service."""
    import uvicorn

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
        typer.echo(f"vmjournal: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run("vmjournal.main:create_app", factory=True, host=settings.host, port=settings.port,
                proxy_headers=True, log_level="info")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (the service also does this when it starts)."""
    from vmjournal import db

    settings = Settings()
    url = db.resolve_database_url(settings)
    asyncio.run(db.upgrade(url))
    typer.echo("database is up to date")


if __name__ == "__main__":
    app()
