"""Options and help text shared by the commands that talk to the service."""

from __future__ import annotations

from typing import Annotated

import typer

DEFAULT_URL = "http://127.0.0.1:8000"

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 error; 2 bad command line; 3 no such VM; 4 the VM failed "
    "(the provider's error is printed); 5 service unreachable; 6 API key missing or refused; "
    "7 a VM of that name exists; 8 timed out waiting; 130 interrupted. "
    "Environment: VMJOURNAL_URL (default " + DEFAULT_URL + "), VMJOURNAL_API_KEY."
)

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="VMJOURNAL_URL", help="The service's base URL.", show_default=True)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
