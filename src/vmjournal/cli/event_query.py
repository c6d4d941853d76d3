from __future__ import annotations

from dataclasses import dataclass, field


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

    def params(self) -> dict[str, str]:
        out = {
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
        return out
