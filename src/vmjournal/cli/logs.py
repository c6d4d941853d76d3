"""``vmjournal logs``: a VM's journal with journalctl's filters, written in journalctl's output modes."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any

import typer

from vmjournal.cli.event_query import EventQuery
from vmjournal.cli.exits import ExitCode
from vmjournal.cli.options import DEFAULT_URL, UrlOpt
from vmjournal.cli.runner import connect, run
from vmjournal.cli.terminal import use_color
from vmjournal.input_errors import InvalidInput
from vmjournal.journal import filters
from vmjournal.journal.render import OUTPUT_MODES, render_export, render_json, render_text


def parse_time(value: str, now: datetime | None = None) -> str:
    """journalctl's ``--since`` forms, read in the local time zone as journalctl does, as an ISO 8601
    UTC instant; a form this cannot read goes to the service as given, which explains what it takes."""
    try:
        instant = filters.parse_time(value, now=now, tz=_local_tz())
    except InvalidInput:
        return value
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _local_tz() -> tzinfo:
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


def write_events(events: Iterable[dict[str, Any]], output: str) -> int:
    """Write events to stdout in an output mode; returns how many were written."""
    color = use_color() and output in ("short", "short-iso")
    count = 0
    sink = sys.stdout.buffer
    if output in ("json", "export"):
        for event in events:
            sink.write(render_json(event) if output == "json" else render_export(event))
            count += 1
            if count % 64 == 0:
                sink.flush()
    else:
        boot = None
        for event in events:
            if output != "cat" and "vm" not in event:
                # journalctl marks where one boot ends and the next begins (not when it merges journals).
                current = event.get("boot_id") or event.get("_BOOT_ID")
                if boot is not None and current != boot:
                    marker = f"-- Boot {current} --"
                    sink.write((f"\x1b[1m{marker}\x1b[0m" if color else marker).encode() + b"\n")
                boot = current
            sink.write(render_text(event, output, color=color))
            count += 1
    sink.flush()
    return count


def _flushing(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Follow mode: every entry must show the moment it arrives."""
    for event in events:
        yield event
        sys.stdout.buffer.flush()


def _fleet_hosts(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Several VMs: the text modes show each entry's VM where journalctl shows the host."""
    for event in events:
        yield {**event, "hostname": event["vm"]} if "vm" in event else event


def logs(
    names: Annotated[list[str], typer.Argument(help="VM names or globs (web-*); several read the fleet merged.")],
    unit: Annotated[str | None, typer.Option("--unit", "-u", help="Only this unit (nginx = nginx.service).")] = None,
    priority: Annotated[
        str | None, typer.Option("--priority", "-p", help="This priority and more severe (number or name).")
    ] = None,
    boot: Annotated[
        str | None,
        typer.Option("--boot", "-b", help="Boot id or offset (0 current, -1 previous; -b alone: 0)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", "-S", help='Entries on or after ("2026-01-02 10:00", "-1h", today).'),
    ] = None,
    until: Annotated[str | None, typer.Option("--until", "-U", help="Entries on or before.")] = None,
    grep: Annotated[str | None, typer.Option("--grep", "-g", help="Only messages matching this pattern.")] = None,
    lines: Annotated[
        str | None, typer.Option("--lines", "-n", help="Show the most recent N entries (-n alone: 10).")
    ] = None,
    reverse: Annotated[bool, typer.Option("--reverse", "-r", help="Newest first.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new entries as they arrive.")] = False,
    output: Annotated[str, typer.Option("--output", "-o", help="short, short-iso, json, cat or export.")] = "short",
    no_pager: Annotated[  # noqa: ARG001
        bool, typer.Option("--no-pager", help="Accepted for journalctl habits; never pages.")
    ] = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """A VM's journal, or several VMs' merged in time order, with journalctl's filters and output modes."""
    if output not in OUTPUT_MODES:
        raise typer.BadParameter(f"must be one of {', '.join(OUTPUT_MODES)}", param_hint="'--output'")
    if lines is not None and lines != "all" and not lines.isdigit():
        raise typer.BadParameter("must be a number or 'all'", param_hint="'--lines'")
    if follow and reverse:
        raise typer.BadParameter("cannot be combined with --follow", param_hint="'--reverse'")
    count = None if lines in (None, "all") else int(lines)
    name: str | list[str] = names[0] if len(names) == 1 else names

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
            if follow:
                # Like journalctl -f: the last N (default 10) entries, then new ones as they come.
                query.limit = 10 if count is None else max(count, 1)
                live = client.follow(name, query, skip_backlog=count == 0)
                write_events(_flushing(_fleet_hosts(live)), output)
                return ExitCode.OK
            if count is not None:
                # The newest N, shown oldest first unless -r.
                # The server caps limit at 10000; beyond that the stream is cut here instead.
                query.limit, query.order = (count if count <= 10_000 else None), "desc"
                if count == 0:
                    return ExitCode.OK
                events = list(itertools.islice(client.events(name, query), count))
                write_events(_fleet_hosts(events if reverse else events[::-1]), output)
            else:
                query.order = "desc" if reverse else "asc"
                write_events(_fleet_hosts(client.events(name, query)), output)
        return ExitCode.OK

    run(body)
