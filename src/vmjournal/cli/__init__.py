"""The ``vmjournal`` command: run the service, manage VMs and read their journals over HTTP.

Everything but ``serve`` and ``db upgrade`` talks to a running service (``--url`` or
``VMJOURNAL_URL``), authenticating with ``VMJOURNAL_API_KEY`` from the environment (never from
argv, where other users of the machine could read it). Colour, spinners and tables appear only
when stdout is a terminal; piped output is plain text a script can parse.

This package lays out the command tree; each command lives in the module of its subject. Nothing
here imports the service, so the CLI starts without loading FastAPI.
"""

from __future__ import annotations

import typer

from vmjournal.cli import alert, logs, server, stats, vm, wait
from vmjournal.cli.argv import BareFlagsTyper
from vmjournal.cli.options import EXIT_CODES_HELP

app = BareFlagsTyper(
    help="Create Linux VMs and read their systemd journals.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
vm_app = typer.Typer(help="Create, list, show and delete VMs.", epilog=EXIT_CODES_HELP, no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
alert_app = typer.Typer(
    help="Alert rules: call a webhook when a journal matches.", epilog=EXIT_CODES_HELP, no_args_is_help=True
)
app.add_typer(vm_app, name="vm")
app.add_typer(db_app, name="db")
app.add_typer(alert_app, name="alert")

app.command("serve")(server.serve)
db_app.command("upgrade")(server.db_upgrade)
db_app.command("prune")(server.db_prune)
vm_app.command("create")(vm.create)
vm_app.command("delete")(vm.delete)
vm_app.command("list")(vm.list_vms)
vm_app.command("show")(vm.show)
app.command("logs")(logs.logs)
app.command("wait")(wait.wait)
app.command("stats")(stats.stats)
alert_app.command("create")(alert.create)
alert_app.command("list")(alert.list_alerts)
alert_app.command("show")(alert.show)
alert_app.command("delete")(alert.delete)


def main() -> None:
    app()
