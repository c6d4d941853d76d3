"""journalctl's optional-value flags: ``-b`` alone means this boot, ``-n`` alone the last 10.

Click has no flag whose value may be left out, so the command line is completed before Click reads it.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import typer

# What may follow -b as its value; anything else (another flag, the VM name) means -b stands alone.
_BOOT_VALUE = re.compile(r"^([+-]?\d+|[0-9a-fA-F]{32}([+-]\d+)?|[0-9a-fA-F-]{36}([+-]\d+)?|all)$")


def fill_bare_flags(argv: list[str]) -> list[str]:
    """``logs`` argv with the implied value after a bare ``-b`` (0) or ``-n`` (10)."""
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


class BareFlagsTyper(typer.Typer):
    """Typer that completes the process's argv with ``fill_bare_flags`` when run as the console script."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "args" not in kwargs:
            sys.argv[1:] = fill_bare_flags(sys.argv[1:])
        return super().__call__(*args, **kwargs)
