"""``vmjournal vm create|delete|list|show``: the VM records, for a person on a terminal or a script."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from vmjournal.cli.exits import ExitCode
from vmjournal.cli.options import DEFAULT_URL, JsonOpt, UrlOpt
from vmjournal.cli.progress import Progress, wait_for
from vmjournal.cli.runner import connect, run
from vmjournal.cli.terminal import STATUS_STYLE, console, local_time, print_columns, stdout_is_tty

_LIST_COLUMNS = ("name", "status", "size", "provider", "events", "last event", "created")


def _error_of(vm: dict[str, Any]) -> tuple[str | None, str | None, list[str]]:
    """The provider's error on a VM record: code, message and the codes of its details."""
    err = vm.get("error") or {}
    return err.get("code"), err.get("message"), [str(d) for d in err.get("details") or []]


def _print_failure(vm: dict[str, Any]) -> None:
    code, message, details = _error_of(vm)
    text = f"VM {vm.get('name')} failed: {code or 'error'}: {message or 'no message'}"
    if details:
        text += f" (details: {', '.join(details)})"
    console(stderr=True).print(text, markup=False, style="bold red" if stdout_is_tty() else None)


def create(
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

    def body() -> int:
        out = console(stderr=json_out)
        with connect(url) as client:
            vm = client.create_vm(name, size, provider)
            token = vm.get("token")
            if token:
                # `external` answers the ingest token once; it is shown here and nowhere else.
                out.print(f"ingest token (shown once): {token}", markup=False)
            if vm.get("install_command"):
                out.print(f"install the agent there with:\n  {vm['install_command']}", markup=False)
            code = ExitCode.OK
            if wait and vm.get("status") not in ("running",) and (provider or "") != "external":
                with Progress(out) as progress:
                    progress.line(f"{name}: requested ({size}, {vm.get('provider', provider or 'default')})")
                    code, latest = wait_for(
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

    run(body)


def delete(
    name: Annotated[str, typer.Argument(help="VM name.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is gone.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait before giving up (exit 8).")] = 1800.0,
    poll: Annotated[float, typer.Option(help="Seconds between status checks.", hidden=True)] = 1.0,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Delete a VM and everything made for it; wait, with progress, until it is gone."""

    def body() -> int:
        out = console()
        with connect(url) as client:
            vm = client.delete_vm(name)
            if not wait:
                out.print(f"{name}: {vm.get('status', 'deleting')}", markup=False)
                return ExitCode.OK
            with Progress(out) as progress:
                code, latest = wait_for(client, name, want="deleted", progress=progress, timeout=timeout, poll=poll)
            if code == ExitCode.VM_FAILED and latest:
                _print_failure(latest)
            return code

    run(body)


def _list_row(vm: dict[str, Any]) -> list[str]:
    return [
        str(vm.get("name", "")),
        str(vm.get("status", "")),
        str(vm.get("size", "")),
        str(vm.get("provider", "")),
        str(vm.get("event_count", 0)),
        local_time(vm.get("last_event_at")),
        local_time(vm.get("created_at")),
    ]


def list_vms(json_out: JsonOpt = False, url: UrlOpt = DEFAULT_URL) -> None:
    """List VMs: a table on a terminal, aligned plain columns when piped."""

    def body() -> int:
        with connect(url) as client:
            vms = client.list_vms()
        if json_out:
            sys.stdout.write(orjson.dumps(vms, option=orjson.OPT_INDENT_2).decode() + "\n")
            return ExitCode.OK
        rows = [_list_row(vm) for vm in vms]
        if stdout_is_tty():
            table = Table(*(c.upper() for c in _LIST_COLUMNS), header_style="bold", box=None, pad_edge=False)
            for vm, row in zip(vms, rows, strict=True):
                table.add_row(*row, style=STATUS_STYLE.get(str(vm.get("status"))))
            console().print(table)
        else:
            print_columns([[c.upper().replace(" ", "_") for c in _LIST_COLUMNS], *rows])
        return ExitCode.OK

    run(body)


def _show_pairs(vm: dict[str, Any]) -> list[tuple[str, str]]:
    """The record as (key, text) lines: nested objects flattened, instants in local time, error last."""
    code, message, details = _error_of(vm)
    pairs: list[tuple[str, str]] = []
    for key, value in vm.items():
        if key == "error":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif key.endswith("_at"):
            value = local_time(value)
        pairs.append((key, "-" if value is None else str(value)))
    if code or message:
        pairs.append(("error", f"{code}: {message}" + (f" ({', '.join(details)})" if details else "")))
    return pairs


def show(
    name: Annotated[str, typer.Argument(help="VM name.")],
    json_out: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Show one VM: status, error, addresses, timestamps, event count."""

    def body() -> int:
        with connect(url) as client:
            vm = client.get_vm(name)
        if json_out:
            sys.stdout.write(orjson.dumps(vm, option=orjson.OPT_INDENT_2).decode() + "\n")
            return ExitCode.OK
        pairs = _show_pairs(vm)
        if stdout_is_tty():
            table = Table(show_header=False, box=None, pad_edge=False)
            table.add_column(style="bold")
            table.add_column()
            for key, value in pairs:
                style = STATUS_STYLE.get(value) if key == "status" else ("red" if key == "error" else None)
                table.add_row(key, value, style=style)
            console().print(table)
        else:
            for key, value in pairs:
                sys.stdout.write(f"{key}: {value}\n")
        return ExitCode.OK

    run(body)
