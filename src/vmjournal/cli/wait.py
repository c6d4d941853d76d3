"""``vmjournal wait``: block until a VM logs a matching entry, print it, exit 0; exit 8 at the timeout.

What a CI pipeline runs after ``vm create`` ("wait until nginx says it is ready"). It follows the
service's live stream (Server-Sent Events), so an entry shows the moment it is stored.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from vmjournal.cli.exits import APIError, ExitCode
from vmjournal.cli.logs import build_query
from vmjournal.cli.options import DEFAULT_URL, UrlOpt
from vmjournal.cli.runner import connect, run
from vmjournal.journal.render import OUTPUT_MODES, TextRenderer


class _TimedOut(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    raise _TimedOut


def wait(
    name: Annotated[str, typer.Argument(help="VM name.")],
    matches: Annotated[
        list[str] | None, typer.Argument(help="FIELD=VALUE matches, as journalctl takes them.", show_default=False)
    ] = None,
    unit: Annotated[str | None, typer.Option("--unit", "-u", help="Only this unit (nginx = nginx.service).")] = None,
    priority: Annotated[
        str | None, typer.Option("--priority", "-p", help="This priority and more severe (number or name).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            "-S",
            help="Also take an entry already stored, from this time on (closes any gap before the wait starts).",
        ),
    ] = None,
    grep: Annotated[str | None, typer.Option("--grep", "-g", help="Only messages matching this pattern.")] = None,
    identifier: Annotated[
        list[str] | None,
        typer.Option("--identifier", "-t", help="Only this SYSLOG_IDENTIFIER (repeatable).", show_default=False),
    ] = None,
    dmesg: Annotated[bool, typer.Option("--dmesg", "-k", help="Kernel messages.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds (exit 8). Default: wait until one comes.")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help=", ".join(OUTPUT_MODES) + ".")] = "short",
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Wait for the first matching entry stored after the command started (or since -S), print it, exit 0."""
    if output not in OUTPUT_MODES:
        raise typer.BadParameter(f"must be one of {', '.join(OUTPUT_MODES)}", param_hint="'--output'")
    query = build_query(
        unit=unit,
        priority=priority,
        boot=None,
        since=since,
        until=None,
        grep=grep,
        matches=matches,
        identifiers=identifier,
        kernel=dmesg,
    )

    def body() -> int:
        if timeout is not None:
            # A timer, not a read timeout: the live stream sends keepalives, and reconnects after a restart.
            signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.001))
        try:
            with connect(url) as client:
                client.get_vm(name)  # no such VM: exit 3 now, not at the timeout
                query.limit = 1
                for event in client.follow(name, query, skip_backlog=since is None):
                    if since is not None:
                        # Something matched since -S (the backlog is the newest): print the first.
                        query.order = "asc"
                        event = next(iter(client.events(name, query)), event)
                    sys.stdout.buffer.write(TextRenderer(output)(event))
                    sys.stdout.buffer.flush()
                    return ExitCode.OK
        except _TimedOut:
            raise APIError(f"no matching entry of {name} within {timeout:g}s", exit_code=ExitCode.TIMEOUT) from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return ExitCode.ERROR

    run(body)
