"""Terminal output: colour, consoles and tables only when stdout is a terminal, plain text otherwise."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Any

from rich.console import Console

STATUS_STYLE = {"running": "green", "failed": "bold red", "deleting": "yellow", "deleted": "dim"}


def stdout_is_tty() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def use_color() -> bool:
    return stdout_is_tty() and not os.environ.get("NO_COLOR")


def console(stderr: bool = False) -> Console:
    # Rich prints plain text (no colour, no markup codes) when its stream is not a terminal.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, no_color=bool(os.environ.get("NO_COLOR")))


def local_time(value: Any) -> str:
    """An ISO 8601 instant from the service, in the local time zone; ``-`` for none."""
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def print_columns(rows: list[list[str]]) -> None:
    """Rows as space-aligned columns, for a pipe (no box drawing, no trailing blanks)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
