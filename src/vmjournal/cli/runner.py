"""The frame around every command that talks to the service: the client, and how failures end it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from vmjournal.cli.exits import APIError, ExitCode
from vmjournal.cli.terminal import console

if TYPE_CHECKING:
    from vmjournal.cli.client import Client


def connect(url: str) -> Client:
    # Imported here: httpx is most of the CLI's start time, and --help and shell completion
    # (which runs the CLI on every TAB) never talk to the service.
    from vmjournal.cli.client import Client

    # The API key comes from the environment only: on argv other users of the machine could read it.
    return Client(url, os.environ.get("VMJOURNAL_API_KEY") or None)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned exit."""
    console(stderr=True).print(Text("error: ", style="bold red") + Text(message))
    return typer.Exit(code)


def run(body: Callable[[], int]) -> None:
    """Run a command's body; map client errors and Ctrl-C to messages and exit codes."""
    try:
        code = body()
    except APIError as exc:
        raise fail(exc.message, exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except BrokenPipeError:
        # `vmjournal logs ... | head`: the reader left; not an error.
        sys.stderr.close()
        raise typer.Exit(0) from None
    if code:
        raise typer.Exit(code)
