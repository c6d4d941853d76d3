"""``vmjournal alert create|list|show|delete``: rules that call a webhook when a journal matches them."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from vmjournal.cli.exits import ExitCode
from vmjournal.cli.options import DEFAULT_URL, JsonOpt, UrlOpt
from vmjournal.cli.runner import connect, run
from vmjournal.cli.terminal import console, local_time, print_columns, stdout_is_tty

_LIST_COLUMNS = ("name", "status", "vm", "filters", "threshold", "firing on")


def _filters(rule: dict[str, Any]) -> str:
    parts = [f"{k}={rule[k]}" for k in ("unit", "priority", "grep") if rule.get(k)]
    parts += list(rule.get("match") or [])
    return " ".join(parts) or "-"


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def create(
    name: Annotated[str, typer.Argument(help="The rule's name.")],
    webhook: Annotated[str, typer.Option("--webhook", "-w", help="URL the notifications are POSTed to.")],
    vm: Annotated[str, typer.Option("--vm", help="Glob over VM names.")] = "*",
    unit: Annotated[str | None, typer.Option("--unit", "-u", help="Unit name or glob.")] = None,
    priority: Annotated[str | None, typer.Option("--priority", "-p", help="Priority (this level and worse).")] = None,
    grep: Annotated[str | None, typer.Option("--grep", "-g", help="Regular expression on MESSAGE.")] = None,
    match: Annotated[list[str] | None, typer.Option("--match", "-m", help="FIELD=VALUE (repeatable).")] = None,
    threshold: Annotated[int, typer.Option(help="Matching entries needed within the window.")] = 1,
    window: Annotated[int, typer.Option("--window", help="Window (and quiet time to resolve), seconds.")] = 60,
    json_out: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Create an alert rule; prints the webhook signing secret, which is shown this once."""

    def body() -> int:
        rule = {
            "name": name,
            "vm": vm,
            "unit": unit,
            "priority": priority,
            "grep": grep,
            "match": match or [],
            "threshold": threshold,
            "window_seconds": window,
            "webhook_url": webhook,
        }
        with connect(url) as client:
            created = client.create_alert({k: v for k, v in rule.items() if v is not None})
        if json_out:
            _print_json(created)
        else:
            console().print(
                f"alert {created['name']} created; signing secret (shown once): {created['secret']}", markup=False
            )
        return ExitCode.OK

    run(body)


def list_alerts(json_out: JsonOpt = False, url: UrlOpt = DEFAULT_URL) -> None:
    """List alert rules and whether they fire."""

    def body() -> int:
        with connect(url) as client:
            rules = client.list_alerts()
        if json_out:
            _print_json(rules)
            return ExitCode.OK
        rows = [
            [
                r["name"],
                r["status"],
                r["vm"],
                _filters(r),
                f"{r['threshold']}/{r['window_seconds']}s",
                ", ".join(r["firing_vms"]) or "-",
            ]
            for r in rules
        ]
        if stdout_is_tty():
            table = Table(*(c.upper() for c in _LIST_COLUMNS), header_style="bold", box=None, pad_edge=False)
            for rule, row in zip(rules, rows, strict=True):
                table.add_row(*row, style="bold red" if rule["status"] == "firing" else None)
            console().print(table)
        else:
            print_columns([[c.upper().replace(" ", "_") for c in _LIST_COLUMNS], *rows])
        return ExitCode.OK

    run(body)


def show(
    name: Annotated[str, typer.Argument(help="The rule's name.")],
    events: Annotated[int, typer.Option(help="How many recent notifications to show.")] = 10,
    json_out: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Show a rule: its state on each VM, counts, and its latest notifications."""

    def body() -> int:
        with connect(url) as client:
            rule = client.get_alert(name)
            history = client.alert_events(name, events) if events > 0 else []
        if json_out:
            _print_json({**rule, "events": history})
            return ExitCode.OK
        out = sys.stdout
        for key in ("name", "status", "vm"):
            out.write(f"{key}: {rule[key]}\n")
        out.write(f"filters: {_filters(rule)}\n")
        out.write(f"fires at: {rule['threshold']} in {rule['window_seconds']}s\nwebhook: {rule['webhook_url']}\n")
        out.write("counts: " + ", ".join(f"{k}={v}" for k, v in rule["counts"].items()) + "\n")
        for state in rule["vms"]:
            out.write(
                f"vm {state['vm']}: {state['status']}, {state['matches']} matches, {state['firings']} firings, "
                f"last fired {local_time(state['fired_at'])}\n"
            )
        for event in history:
            out.write(
                f"{local_time(event['created_at'])}  {event['status']:<8} {event['vm']}  count={event['count']}"
                f"  {event['delivery']} after {event['attempts']} attempt(s)"
                + (f" ({event['last_error']})" if event["last_error"] else "")
                + "\n"
            )
        return ExitCode.OK

    run(body)


def delete(name: Annotated[str, typer.Argument(help="The rule's name.")], url: UrlOpt = DEFAULT_URL) -> None:
    """Delete a rule, its state and its history."""

    def body() -> int:
        with connect(url) as client:
            client.delete_alert(name)
        console().print(f"alert {name} deleted", markup=False)
        return ExitCode.OK

    run(body)
