from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import quote_from_bytes, urlencode


@dataclass
class EventQuery:
    """The journalctl-like filters of the ``/boot`` routes."""

    unit: str | None = None
    priority: str | None = None
    boot: str | None = None
    since: str | None = None
    until: str | None = None
    grep: str | None = None
    limit: int | None = None
    order: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # journalctl's FIELD=VALUE terms, as argv gave them (bytes that are not UTF-8 as surrogate escapes).
    matches: list[str] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)
    kernel: bool = False

    def query_string(self, params: dict[str, str | list[str]] | None = None) -> str:
        """``?`` and the parameters (``params()`` unless given), the matches encoded byte for byte:
        journalctl matches bytes, and httpx would encode them as UTF-8 (failing on other bytes)."""
        parts = [urlencode(self.params() if params is None else params, doseq=True)]
        parts += ["match=" + quote_from_bytes(os.fsencode(m), safe="") for m in self.matches]
        joined = "&".join(p for p in parts if p)
        return "?" + joined if joined else ""

    def params(self) -> dict[str, str | list[str]]:
        out: dict[str, str | list[str]] = {
            k: str(v)
            for k, v in (
                ("priority", self.priority),
                ("boot", self.boot),
                ("since", self.since),
                ("until", self.until),
                ("grep", self.grep),
                ("limit", self.limit),
                ("order", self.order),
            )
            if v is not None
        }
        out.update(self.extra)
        if self.identifiers:
            out["identifier"] = list(self.identifiers)
        if self.kernel:
            out["kernel"] = "true"
        return out
