"""How the CLI ends: exit codes that scripts rely on, and the error that carries one."""

from __future__ import annotations


class ExitCode:
    """Exit codes of the CLI, stable for scripts (listed in ``vmjournal --help``)."""

    OK = 0
    ERROR = 1  # anything else: a bad answer from the service, bad input it refused
    USAGE = 2  # wrong command line (click's own code)
    NOT_FOUND = 3  # no such VM
    VM_FAILED = 4  # the VM ended in status "failed" (the provider's error is printed)
    UNREACHABLE = 5  # the service could not be reached
    AUTH = 6  # the API key is missing or wrong
    CONFLICT = 7  # a VM of that name already exists
    TIMEOUT = 8  # --timeout passed before the VM reached the wanted state
    INTERRUPTED = 130  # Ctrl-C


class APIError(Exception):
    """A failure talking to the service, in words a person can act on, with the exit code for the shell."""

    def __init__(self, message: str, *, exit_code: int = ExitCode.ERROR, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status
