"""journalctl's listings as it prints them: ``--list-boots`` and ``-F FIELD``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import tzinfo
from typing import Any

from vmjournal.journal.render import full_time


def boots_table(boots: Sequence[Mapping[str, Any]], *, tz: tzinfo | None = None, header: bool = True) -> bytes:
    """``journalctl --list-boots``: offset, id, first and last entry, in columns."""
    rows = [
        [
            str(b["offset"]),
            str(b["boot_id"]).replace("-", ""),
            full_time(b["first_at"].astimezone(tz)),
            full_time(b["last_at"].astimezone(tz)),
        ]
        for b in boots
    ]
    titles = ["IDX", "BOOT ID", "FIRST ENTRY", "LAST ENTRY"]
    widths = [max([len(r[i]) for r in rows] + ([len(titles[i])] if header else [0])) for i in range(4)]
    lines = [" ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()] if header else []
    for row in rows:
        # The offset is right-aligned; the last column is not padded.
        lines.append(
            " ".join(
                [row[0].rjust(widths[0]), *(c.ljust(w) for c, w in zip(row[1:3], widths[1:3], strict=True)), row[3]]
            )
        )
    return "".join(line + "\n" for line in lines).encode()


def values_text(values: list[str | bytes]) -> bytes:
    """Field values one per line, as ``journalctl -F`` prints them (bytes as they are)."""
    return b"".join((v if isinstance(v, bytes) else v.encode()) + b"\n" for v in values)
