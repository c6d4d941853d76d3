"""The ``vmjournal`` command: run the service, manage VMs and read their journals over HTTP.

Everything but ``serve`` and ``db upgrade`` talks to a running service (``--url`` or
``VMJOURNAL_URL``), authenticating with ``VMJOURNAL_API_KEY`` from the environment (never from
argv, where other users of the machine could read it). Colour, spinners and tables appear only
when stdout is a terminal; piped output is plain text a script can parse.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vmjournal.client import DEFAULT_URL, APIError, Client, EventQuery, ExitCode
from vmjournal.errors import BadRequest
from vmjournal.journal import filters
from vmjournal.journal.render import OUTPUT_MODES, render_export, render_json, render_text

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 error; 2 bad command line; 3 no such VM; 4 the VM failed "
    "(the provider's error is printed); 5 service unreachable; 6 API key missing or refused; "
    "7 a VM of that name exists; 8 timed out waiting; 130 interrupted. "
    "Environment: VMJOURNAL_URL (default " + DEFAULT_URL + "), VMJOURNAL_API_KEY."
)


class _App(typer.Typer):
    """Typer, plus journalctl's optional-value flags (``-b`` alone means this boot, ``-n`` alone 10)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "args" not in kwargs:
            sys.argv[1:] = _fill_bare_flags(sys.argv[1:])
        return super().__call__(*args, **kwargs)


_BOOT_VALUE = re.compile(r"^([+-]?\d+|[0-9a-fA-F]{32}([+-]\d+)?|[0-9a-fA-F-]{36}([+-]\d+)?|all)$")


def _fill_bare_flags(argv: list[str]) -> list[str]:
    if "logs" not in argv:
        return argv
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if arg in ("-b", "--boot") and (nxt is None or not _BOOT_VALUE.match(nxt)):
            out.append("0")
        elif arg in ("-n", "--lines") and (nxt is None or not (nxt.isdigit() or nxt == "all")):
            out.append("10")
    return out


app = _App(
    help="Create Linux VMs and read their systemd journals.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
vm_app = typer.Typer(help="Create, list, show and delete VMs.", epilog=EXIT_CODES_HELP, no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(vm_app, name="vm")
app.add_typer(db_app, name="db")

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="VMJOURNAL_URL", help="The service's base URL.", show_default=True)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


def _stdout_is_tty() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def _color() -> bool:
    return _stdout_is_tty() and not os.environ.get("NO_COLOR")


def _console(stderr: bool = False) -> Console:
    # Rich prints plain text (no colour, no markup codes) when its stream is not a terminal.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, no_color=bool(os.environ.get("NO_COLOR")))


def _client(url: str) -> Client:
    return Client(url, os.environ.get("VMJOURNAL_API_KEY") or None)


def _fail(message: str, code: int) -> typer.Exit:
    _console(stderr=True).print(Text("error: ", style="bold red") + Text(message))
    return typer.Exit(code)


def _run(fn: Any, *args: Any, **kwargs: Any) -> None:
    """Map client errors and Ctrl-C to messages and exit codes."""
    try:
        code = fn(*args, **kwargs)
    except APIError as exc:
        raise _fail(exc.message, exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except BrokenPipeError:
        # `vmjournal logs ... | head`: the reader left; not an error.
        sys.stderr.close()
        raise typer.Exit(0) from None
    if code:
        raise typer.Exit(code)


# -- serve / db -------------------------------------------------------------------------------


@app.command()
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
        raise _fail(str(exc), ExitCode.USAGE) from None
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


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (the service also does this when it starts)."""
    import asyncio

    from vmjournal import db
    from vmjournal.config import Settings

    url, _ = db.resolve_database_url(Settings())
    asyncio.run(db.upgrade(url))
    typer.echo("database is up to date")


# -- VMs --------------------------------------------------------------------------------------


def _error_of(vm: dict[str, Any]) -> tuple[str | None, str | None, list[str]]:
    """The provider's error on a VM record: code, message and the codes of its details."""
    err = vm.get("error") or {}
    return err.get("code"), err.get("message"), [str(d) for d in err.get("details") or []]


def _print_failure(vm: dict[str, Any]) -> None:
    code, message, details = _error_of(vm)
    text = f"VM {vm.get('name')} failed: {code or 'error'}: {message or 'no message'}"
    if details:
        text += f" (details: {', '.join(details)})"
    _console(stderr=True).print(text, markup=False, style="bold red" if _stdout_is_tty() else None)


class _Progress:
    """Status lines while waiting: a spinner on a terminal, timestamped plain lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tty = console.is_terminal
        self._status = console.status("") if self.tty else None

    def __enter__(self) -> _Progress:
        if self._status:
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status:
            self._status.__exit__(None, None, None)

    def waiting(self, text: str) -> None:
        if self._status:
            self._status.update(text)

    def line(self, text: str, style: str | None = None) -> None:
        if self.tty:
            self.console.print(text, style=style, markup=False)
        else:
            self.console.print(f"{datetime.now().strftime('%H:%M:%S')} {text}", markup=False)


def _wait_for(
    client: Client,
    name: str,
    *,
    want: str,
    progress: _Progress,
    timeout: float,
    poll: float,
    first_lines: int = 0,
    lines_wait: float = 0.0,
) -> tuple[int, dict[str, Any] | None]:
    """Poll the VM, reporting status changes, until it reaches ``want`` or fails."""
    deadline = time.monotonic() + timeout
    last: tuple[Any, Any] | None = None
    lines_shown = first_lines == 0
    running_since: float | None = None
    vm: dict[str, Any] | None = None
    while True:
        try:
            vm = client.get_vm(name)
        except APIError as exc:
            if want == "deleted" and exc.exit_code == ExitCode.NOT_FOUND:
                progress.line(f"{name}: deleted")
                return ExitCode.OK, None
            raise
        status, step = vm.get("status"), vm.get("step")
        if (status, step) != last:
            progress.line(f"{name}: {status}" + (f" ({step})" if step and status != want else ""))
            last = (status, step)
        if not lines_shown and (vm.get("event_count") or 0) > 0:
            events = list(client.events(name, EventQuery(limit=first_lines, order="asc")))
            for event in events[:first_lines]:
                line = render_text(event, "short", color=False).decode("utf-8", "replace").rstrip("\n")
                progress.line("  " + line, style="dim")
            lines_shown = bool(events)
        if status == "failed":
            return ExitCode.VM_FAILED, vm
        if status == want:
            if lines_shown:
                return ExitCode.OK, vm
            running_since = running_since or time.monotonic()
            if time.monotonic() - running_since >= lines_wait:
                progress.line(f"{name}: no journal entries yet (vmjournal logs -f {name})", style="dim")
                return ExitCode.OK, vm
            progress.waiting(f"{name} is {status}; waiting for its first journal lines")
        elif want == "running" and status in ("deleting", "deleted"):
            return ExitCode.ERROR, vm
        else:
            progress.waiting(f"{name} is {status}" + (f": {step}" if step else ""))
        if time.monotonic() >= deadline:
            progress.line(f"{name}: still {status} after {timeout:.0f}s; giving up waiting (it goes on)")
            return ExitCode.TIMEOUT, vm
        time.sleep(poll)


@vm_app.command("create")
def vm_create(
    name: Annotated[str, typer.Argument(help="VM name (letters, digits, dashes).")],
    size: Annotated[str, typer.Option("--size", "-s", help="small, medium or large.")] = "small",
    provider: Annotated[
        str | None, typer.Option(help="azure, qemu or external (default: the service's setting).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the VM runs.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait before giving up (exit 8).")] = 1800.0,
    lines: Annotated[int, typer.Option(help="How many first journal lines to show.")] = 5,
    lines_wait: Annotated[
        float, typer.Option(help="Seconds to wait for the first journal lines once the VM runs.")
    ] = 15.0,
    poll: Annotated[float, typer.Option(help="Seconds between status checks.", hidden=True)] = 1.0,
    json_out: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Create a VM; show its progress and first journal lines, return once it runs."""

    def run() -> int:
        out = _console(stderr=json_out)
        with _client(url) as client:
            vm = client.create_vm(name, size, provider)
            token = vm.get("token")
            if token:
                # `external` answers the ingest token once; it is shown here and nowhere else.
                out.print(f"ingest token (shown once): {token}", markup=False)
            if vm.get("install_command"):
                out.print(f"install the agent there with:\n  {vm['install_command']}", markup=False)
            code = ExitCode.OK
            if wait and vm.get("status") not in ("running",) and (provider or "") != "external":
                with _Progress(out) as progress:
                    progress.line(f"{name}: requested ({size}, {vm.get('provider', provider or 'default')})")
                    code, latest = _wait_for(
                        client,
                        name,
                        want="running",
                        progress=progress,
                        timeout=timeout,
                        poll=poll,
                        first_lines=lines,
                        lines_wait=lines_wait,
                    )
                    vm = latest or vm
            if code == ExitCode.VM_FAILED:
                _print_failure(vm)
            elif code == ExitCode.OK and wait and vm.get("status") == "running":
                addresses = ", ".join(f"{k} {v}" for k, v in (vm.get("addresses") or {}).items())
                out.print(f"{name} is running" + (f" ({addresses})" if addresses else ""), markup=False)
            if json_out:
                sys.stdout.write(orjson.dumps(vm).decode() + "\n")
            return code

    _run(run)


@vm_app.command("delete")
def vm_delete(
    name: Annotated[str, typer.Argument(help="VM name.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is gone.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait before giving up (exit 8).")] = 1800.0,
    poll: Annotated[float, typer.Option(help="Seconds between status checks.", hidden=True)] = 1.0,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Delete a VM and everything made for it; wait, with progress, until it is gone."""

    def run() -> int:
        out = _console()
        with _client(url) as client:
            vm = client.delete_vm(name)
            if not wait:
                out.print(f"{name}: {vm.get('status', 'deleting')}", markup=False)
                return ExitCode.OK
            with _Progress(out) as progress:
                code, latest = _wait_for(
                    client, name, want="deleted", progress=progress, timeout=timeout, poll=poll
                )
            if code == ExitCode.VM_FAILED and latest:
                _print_failure(latest)
            return code

    _run(run)


_LIST_COLUMNS = ("name", "status", "size", "provider", "events", "last event", "created")


def _when(value: Any) -> str:
    if not value:
        return "-"
    try:
        return (
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            .astimezone()
            .strftime("%Y-%m-%d %H:%M:%S")
        )
    except ValueError:
        return str(value)


def _list_row(vm: dict[str, Any]) -> list[str]:
    return [
        str(vm.get("name", "")),
        str(vm.get("status", "")),
        str(vm.get("size", "")),
        str(vm.get("provider", "")),
        str(vm.get("event_count", 0)),
        _when(vm.get("last_event_at")),
        _when(vm.get("created_at")),
    ]


_STATUS_STYLE = {"running": "green", "failed": "bold red", "deleting": "yellow", "deleted": "dim"}


@vm_app.command("list")
def vm_list(json_out: JsonOpt = False, url: UrlOpt = DEFAULT_URL) -> None:
    """List VMs: a table on a terminal, aligned plain columns when piped."""

    def run() -> int:
        with _client(url) as client:
            vms = client.list_vms()
        if json_out:
            sys.stdout.write(orjson.dumps(vms, option=orjson.OPT_INDENT_2).decode() + "\n")
            return ExitCode.OK
        rows = [_list_row(vm) for vm in vms]
        if _stdout_is_tty():
            table = Table(*(c.upper() for c in _LIST_COLUMNS), header_style="bold", box=None, pad_edge=False)
            for vm, row in zip(vms, rows, strict=True):
                table.add_row(*row, style=_STATUS_STYLE.get(str(vm.get("status"))))
            _console().print(table)
        else:
            _print_columns([[c.upper().replace(" ", "_") for c in _LIST_COLUMNS], *rows])
        return ExitCode.OK

    _run(run)


def _print_columns(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


@vm_app.command("show")
def vm_show(
    name: Annotated[str, typer.Argument(help="VM name.")],
    json_out: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Show one VM: status, error, addresses, timestamps, event count."""

    def run() -> int:
        with _client(url) as client:
            vm = client.get_vm(name)
        if json_out:
            sys.stdout.write(orjson.dumps(vm, option=orjson.OPT_INDENT_2).decode() + "\n")
            return ExitCode.OK
        code, message, details = _error_of(vm)
        pairs: list[tuple[str, str]] = []
        for key, value in vm.items():
            if key == "error":
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
            elif key.endswith("_at"):
                value = _when(value)
            pairs.append((key, "-" if value is None else str(value)))
        if code or message:
            pairs.append(("error", f"{code}: {message}" + (f" ({', '.join(details)})" if details else "")))
        if _stdout_is_tty():
            table = Table(show_header=False, box=None, pad_edge=False)
            table.add_column(style="bold")
            table.add_column()
            for key, value in pairs:
                style = _STATUS_STYLE.get(value) if key == "status" else ("red" if key == "error" else None)
                table.add_row(key, value, style=style)
            _console().print(table)
        else:
            for key, value in pairs:
                sys.stdout.write(f"{key}: {value}\n")
        return ExitCode.OK

    _run(run)


# -- logs -------------------------------------------------------------------------------------

def parse_time(value: str, now: datetime | None = None) -> str:
    """journalctl's ``--since`` forms, read in the local time zone as journalctl does, as an ISO 8601
    UTC instant; a form this cannot read goes to the service as given, which explains what it takes."""
    try:
        instant = filters.parse_time(value, now=now, tz=_local_tz())
    except BadRequest:
        return value
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _local_tz() -> tzinfo:
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


def _write_events(events: Iterable[dict[str, Any]], output: str) -> int:
    color = _color() and output in ("short", "short-iso")
    count = 0
    if output in ("json", "export"):
        sink = sys.stdout.buffer
        for event in events:
            sink.write(render_json(event) if output == "json" else render_export(event))
            count += 1
            if count % 64 == 0:
                sink.flush()
        sink.flush()
    else:
        sink = sys.stdout.buffer
        boot = None
        for event in events:
            if output != "cat":
                # journalctl marks where one boot ends and the next begins.
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


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="VM name.")],
    unit: Annotated[
        str | None, typer.Option("--unit", "-u", help="Only this unit (nginx = nginx.service).")
    ] = None,
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
    grep: Annotated[
        str | None, typer.Option("--grep", "-g", help="Only messages matching this pattern.")
    ] = None,
    lines: Annotated[
        str | None, typer.Option("--lines", "-n", help="Show the most recent N entries (-n alone: 10).")
    ] = None,
    reverse: Annotated[bool, typer.Option("--reverse", "-r", help="Newest first.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new entries as they arrive.")
    ] = False,
    output: Annotated[
        str, typer.Option("--output", "-o", help="short, short-iso, json, cat or export.")
    ] = "short",
    no_pager: Annotated[  # noqa: ARG001
        bool, typer.Option("--no-pager", help="Accepted for journalctl habits; never pages.")
    ] = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """A VM's journal, with journalctl's filters and output modes."""
    if output not in OUTPUT_MODES:
        raise typer.BadParameter(f"must be one of {', '.join(OUTPUT_MODES)}", param_hint="'--output'")
    if lines is not None and lines != "all" and not lines.isdigit():
        raise typer.BadParameter("must be a number or 'all'", param_hint="'--lines'")
    if follow and reverse:
        raise typer.BadParameter("cannot be combined with --follow", param_hint="'--reverse'")
    count = None if lines in (None, "all") else int(lines)

    def run() -> int:
        query = EventQuery(
            unit=unit,
            priority=priority,
            boot=boot,
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            grep=grep,
        )
        with _client(url) as client:
            if follow:
                # Like journalctl -f: the last N (default 10) entries, then new ones as they come.
                query.limit = 10 if count is None else max(count, 1)
                live = client.follow(name, query, skip_backlog=count == 0)
                _write_events(_flushing(live), output)
                return ExitCode.OK
            if count is not None:
                # The newest N, shown oldest first unless -r.
                # The server caps limit at 10000; beyond that the stream is cut here instead.
                query.limit, query.order = (count if count <= 10_000 else None), "desc"
                if count == 0:
                    return ExitCode.OK
                events = list(itertools.islice(client.events(name, query), count))
                _write_events(events if reverse else events[::-1], output)
            else:
                query.order = "desc" if reverse else "asc"
                _write_events(client.events(name, query), output)
        return ExitCode.OK

    _run(run)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
