"""When a rule fires on a VM: a pure state machine over the matching entries, in the order stored.

A rule fires when ``threshold`` matching entries fall within ``window`` of journal time; once
firing, further matches only extend the firing, and it resolves (alerts/evaluation.py) when none
has been seen for the window. The state keeps the latest ``max(threshold, SAMPLE)`` matches, so
the decision needs no query of older entries and survives restarts in its row.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

SAMPLE = 5

Match = tuple[datetime, int]  # (journal timestamp, seq)


@dataclass
class State:
    """One rule on one VM, as stored in ``alert_state``."""

    rule_id: UUID
    vm_id: UUID
    status: str = "ok"
    recent: list[Match] = field(default_factory=list)  # ordered by timestamp
    first_at: datetime | None = None
    last_at: datetime | None = None
    episode_count: int = 0
    fired_at: datetime | None = None
    last_seen_at: datetime | None = None
    matches: int = 0
    firings: int = 0

    @classmethod
    def from_record(cls, r: Any) -> State:
        return cls(
            rule_id=r["rule_id"],
            vm_id=r["vm_id"],
            status=r["status"],
            recent=list(zip(r["recent_ts"], r["recent_seq"], strict=True)),
            first_at=r["first_at"],
            last_at=r["last_at"],
            episode_count=r["episode_count"],
            fired_at=r["fired_at"],
            last_seen_at=r["last_seen_at"],
            matches=r["matches"],
            firings=r["firings"],
        )

    def values(self) -> tuple[Any, ...]:
        """The row, in alerts/store.py ``STATE_COLUMNS`` order."""
        return (
            self.rule_id,
            self.vm_id,
            self.status,
            [m[0] for m in self.recent],
            [m[1] for m in self.recent],
            self.first_at,
            self.last_at,
            self.episode_count,
            self.fired_at,
            self.last_seen_at,
            self.matches,
            self.firings,
        )


@dataclass(frozen=True)
class Firing:
    """The window that made a rule fire: the matches in it, in time order (at least ``threshold``)."""

    matches: tuple[Match, ...]

    @property
    def first_at(self) -> datetime:
        return self.matches[0][0]

    @property
    def last_at(self) -> datetime:
        return self.matches[-1][0]


def _keep(state: State, threshold: int) -> None:
    del state.recent[: max(0, len(state.recent) - max(threshold, SAMPLE))]


def observe(state: State, new: list[Match], *, threshold: int, window: timedelta, now: datetime) -> Firing | None:
    """Take the rule's new matches on the VM (in seq order); the firing they start, if any."""
    fired: Firing | None = None
    for match in new:
        state.matches += 1
        state.last_seen_at = now
        if state.status == "firing":
            state.episode_count += 1
            state.last_at = max(state.last_at or match[0], match[0])
            bisect.insort(state.recent, match)
            _keep(state, threshold)
            continue
        i = bisect.bisect_right(state.recent, match)
        state.recent.insert(i, match)
        # Every run of `threshold` consecutive matches (by time) that contains the new one.
        for j in range(max(0, i - threshold + 1), min(i, len(state.recent) - threshold) + 1):
            first, last = state.recent[j][0], state.recent[j + threshold - 1][0]
            if last - first <= window:
                # The kept matches are the latest ones, so every match between these two is kept.
                fired = Firing(tuple(m for m in state.recent if first <= m[0] <= last))
                state.status = "firing"
                state.first_at, state.last_at = first, max(m[0] for m in state.recent)
                state.episode_count = threshold
                state.fired_at = now
                state.firings += 1
                break
        _keep(state, threshold)
    return fired


def resolve(state: State) -> None:
    """The firing is over: the next one needs ``threshold`` new matches."""
    state.status = "ok"
    state.recent = []
