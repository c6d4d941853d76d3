"""Waiting for a VM: poll its record, report each status change, show its first journal lines."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console

from vmjournal.cli.event_query import EventQuery
from vmjournal.cli.exits import APIError, ExitCode
from vmjournal.journal.render import render_text

if TYPE_CHECKING:
    from vmjournal.cli.client import Client


class Progress:
    """Status lines while waiting: a spinner on a terminal, timestamped plain lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tty = console.is_terminal
        self._status = console.status("") if self.tty else None

    def __enter__(self) -> Progress:
        if self._status:
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status:
            self._status.__exit__(None, None, None)

    def waiting(self, text: str) -> None:
        """What is awaited now: the spinner's text on a terminal, nothing on a pipe."""
        if self._status:
            self._status.update(text)

    def line(self, text: str, style: str | None = None) -> None:
        """A line that stays: something happened."""
        if self.tty:
            self.console.print(text, style=style, markup=False)
        else:
            self.console.print(f"{datetime.now().strftime('%H:%M:%S')} {text}", markup=False)


def wait_for(
    client: Client,
    name: str,
    *,
    want: str,
    progress: Progress,
    timeout: float,
    poll: float,
    first_lines: int = 0,
    lines_wait: float = 0.0,
) -> tuple[int, dict[str, Any] | None]:
    """Poll the VM, reporting status changes, until it reaches ``want`` or fails.

    With ``first_lines``, reaching ``want`` is not the end: up to ``lines_wait`` seconds more go to
    showing the VM's first journal lines, proof that its agent delivers. Returns the exit code and the
    VM's last record (None once a deleted VM is gone)."""
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
