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
from vmjournal.journal import filters, listing
from vmjournal.journal.render import OUTPUT_MODES, SHORT_MODES, TextRenderer


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
    """Write events to stdout in an output mode (journalctl's boot lines included); returns how many."""
    renderer = TextRenderer(output, color=use_color() and output in SHORT_MODES)
    count = 0
    sink = sys.stdout.buffer
    for event in events:
        sink.write(renderer(event))
        count += 1
        if count % 64 == 0:
            sink.flush()
    sink.flush()
    return count


def _write_boots(boots: list[dict[str, Any]]) -> None:
    for boot in boots:
        for key in ("first_at", "last_at"):
            boot[key] = datetime.fromisoformat(str(boot[key]).replace("Z", "+00:00"))
    sys.stdout.buffer.write(listing.boots_table(boots))
    sys.stdout.buffer.flush()


def build_query(
    *,
    unit: str | None,
    priority: str | None,
    boot: str | None,
    since: str | None,
    until: str | None,
    grep: str | None,
    matches: list[str] | None,
    identifiers: list[str] | None,
    kernel: bool,
) -> EventQuery:
    """The service's query for journalctl's filters (times read in the local time zone)."""
    for term in matches or []:
        name, sep, _ = term.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{term!r} is not FIELD=VALUE", param_hint="'MATCHES'")
    return EventQuery(
        unit=unit,
        priority=priority,
        boot=boot,
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        grep=grep,
        matches=list(matches or []),
        identifiers=list(identifiers or []),
        kernel=kernel,
    )


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
    targets: Annotated[
        list[str],
        typer.Argument(
            help="VM names or globs (web-*; several read the fleet, merged in time order), then FIELD=VALUE "
            "matches as journalctl takes them (one field's values ORed, fields ANDed).",
            metavar="NAME... [FIELD=VALUE...]",
        ),
    ],
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
    identifier: Annotated[
        list[str] | None,
        typer.Option("--identifier", "-t", help="Only this SYSLOG_IDENTIFIER (repeatable).", show_default=False),
    ] = None,
    dmesg: Annotated[
        bool, typer.Option("--dmesg", "-k", help="Kernel messages of the current boot (or of -b).")
    ] = False,
    field: Annotated[str | None, typer.Option("--field", "-F", help="List the values of this field.")] = None,
    list_boots: Annotated[bool, typer.Option("--list-boots", help="List the VM's boots.")] = False,
    lines: Annotated[
        str | None, typer.Option("--lines", "-n", help="Show the most recent N entries (-n alone: 10).")
    ] = None,
    reverse: Annotated[bool, typer.Option("--reverse", "-r", help="Newest first.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new entries as they arrive.")] = False,
    output: Annotated[str, typer.Option("--output", "-o", help=", ".join(OUTPUT_MODES) + ".")] = "short",
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
    # journalctl takes matches as positional FIELD=VALUE words; no VM name or glob holds a '='.
    names = [t for t in targets if "=" not in t]
    matches = [t for t in targets if "=" in t]
    if not names:
        raise typer.BadParameter("name at least one VM (or a glob)", param_hint="NAME")
    name: str | list[str] = names[0] if len(names) == 1 else names
    if (list_boots or field is not None) and (len(names) > 1 or filters.is_glob(names[0])):
        raise typer.BadParameter("takes one VM", param_hint="'--list-boots'" if list_boots else "'--field'")

    query = build_query(
        unit=unit,
        priority=priority,
        boot=boot,
        since=since,
        until=until,
        grep=grep,
        matches=matches,
        identifiers=identifier,
        kernel=dmesg,
    )

    def body() -> int:
        with connect(url) as client:
            if list_boots:
                _write_boots(client.boots(names[0]))
                return ExitCode.OK
            if field is not None:
                sys.stdout.buffer.write(listing.values_text(client.field_values(names[0], field)))
                return ExitCode.OK
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
