"""``vmjournal stats``: log volume per time bucket and priority, of one VM or of the fleet."""

from __future__ import annotations

import shutil
import sys
from typing import Annotated, Any

import typer

from vmjournal.cli.event_query import EventQuery
from vmjournal.cli.exits import ExitCode
from vmjournal.cli.logs import parse_time
from vmjournal.cli.options import DEFAULT_URL, JsonOpt, UrlOpt
from vmjournal.cli.runner import connect, run
from vmjournal.cli.terminal import local_time, stdout_is_tty, use_color
from vmjournal.journal.filters import PRIORITIES

# Bar colours: errors and worse red, warnings yellow, the rest plain (as journalctl colours lines).
_STYLES = (("\x1b[31m", range(0, 4)), ("\x1b[33m", range(4, 5)), ("", range(5, 8)))


def _bar(bucket: dict[str, Any], scale: float, color: bool) -> str:
    out = []
    for style, levels in _STYLES:
        n = sum(bucket["by_priority"].get(str(p), 0) for p in levels)
        width = round(n * scale) if n else 0
        if n and not width:
            width = 1
        if width:
            out.append(f"{style}{'█' * width}\x1b[0m" if color and style else "█" * width)
    return "".join(out)


def stats(
    name: Annotated[str, typer.Argument(help="A VM name or a glob (web-*).")],
    unit: Annotated[str | None, typer.Option("--unit", "-u", help="Only this unit.")] = None,
    priority: Annotated[str | None, typer.Option("--priority", "-p", help="This priority and more severe.")] = None,
    boot: Annotated[str | None, typer.Option("--boot", "-b", help="Boot id or offset.")] = None,
    since: Annotated[str | None, typer.Option("--since", "-S", help="Entries on or after.")] = None,
    until: Annotated[str | None, typer.Option("--until", "-U", help="Entries on or before.")] = None,
    grep: Annotated[str | None, typer.Option("--grep", "-g", help="Only messages matching this pattern.")] = None,
    step: Annotated[
        str | None, typer.Option("--step", help="Bucket width: 60, 1m, 1h, 1d (default: ~100 buckets).")
    ] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Log volume per time bucket and priority: a bar chart on a terminal, numbers when piped."""

    def body() -> int:
        query = EventQuery(
            unit=unit,
            priority=priority,
            boot=boot,
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            grep=grep,
        )
        with connect(url) as client:
            result = client.histogram(name, query, step)
        buckets = result["buckets"]
        out = sys.stdout
        if as_json:
            import json

            out.write(json.dumps(result) + "\n")
        elif not stdout_is_tty():
            # One line per bucket: start, total, then the count of each priority 0-7.
            out.write("\t".join(["start", "total", *PRIORITIES]) + "\n")
            for b in buckets:
                counts = [str(b["by_priority"].get(str(p), 0)) for p in range(8)]
                out.write("\t".join([b["start"], str(b["total"]), *counts]) + "\n")
        else:
            top = max((b["total"] for b in buckets), default=0)
            width = max(10, shutil.get_terminal_size().columns - 30)
            scale = width / top if top else 0.0
            color = use_color()
            for b in buckets:
                out.write(f"{local_time(b['start'])}  {b['total']:>8}  {_bar(b, scale, color)}\n")
            total = sum(b["total"] for b in buckets)
            out.write(
                f"{total} events in {len(buckets)} buckets of {result['step_seconds']}s "
                "(red: err and worse, yellow: warning)\n"
            )
        return ExitCode.OK

    run(body)
